"""The notebook machinery: typed parameters (``config``), figure + JSON records (``report``),
plotting (``plots``), the paper's own numbers (``paper``) and the main job (``mainjob``, behind
``make figures`` and the smoke copies of ``make test``).
"""

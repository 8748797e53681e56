"""Study helpers: the measurements behind the notebooks' figures, one module per study.

Each module is named after what it measures (``reconstruction``, ``w_vs_noise``, ``cross_domain``,
``reference_quality``, ``nonsquare``, ``cost``); ``verdict`` holds the one rule that turns a measured
difference into "held", "opposite" or "within noise". They build on the method at the top of
``hrinv_nb``; the method never imports from here.
"""

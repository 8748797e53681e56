"""Study helpers: the measurements behind the notebooks' figures, one module per study.

Each module is named after what it measures (``reconstruction``, ``w_vs_noise``, ``cross_domain``,
``reference_quality``, ``nonsquare``, ``cost``, ``id_retrieval``); ``verdict`` holds the one rule
that turns a measured difference into a verdict: the 2-s.e. rule ("held", "opposite", "within noise")
and, on top of it, a pre-registered claim (prediction, do-nothing control, cluster-robust s.e.,
smallest detectable effect) with four outcomes: held, not held, inconclusive, control passes.
They build on the method at the top of
``hrinv_nb``; the method never imports from here.
"""

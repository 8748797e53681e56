"""The embedded toy world: what the notebooks run on when no real weights are given.

A procedural face renderer (``render*``), the toy generators' training recipes and loop (``world``,
``training``, ``build_assets``), the toy perceptual and identity networks (``vgg``, ``identity``) and
the measured quality of the shipped assets (``quality``). The method modules never import from here.
"""

"""The built-in components: internal plugins holding only hook implementations.

Loading them imports no torch, numpy or pandas: those are imported inside the factories
(and executors' ``run``), when a component is built, so ``lrlab list`` and ``lrlab
plugins`` start in a fraction of a second (``tests/test_startup.py`` holds them to it).
"""

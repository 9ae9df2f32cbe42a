"""gridwatch's benchmarks, a package so that each runs both as ``python bench/X.py`` and ``python -m bench.X``.

Its modules are named so that none shadows a standard-library module or one of
the project's packages when ``python bench/X.py`` puts this folder first on the
import path (hence ``queue_load.py`` and ``api_load.py``, not ``queue.py`` and
``api.py``); ``bench/machine.py`` is shared by all of them as ``bench.machine``.
"""

"""The GPU check: ``prepare.py`` makes its bundle here, ``run.py`` runs it on a GPU machine (by path, standalone)."""

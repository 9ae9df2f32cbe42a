"""The conflict classifier: its shipped weights (conflict-v3.json), data card, and the script that trained it.

A package so that ``models.conflict.train`` (clip reading, observation cache,
grouped cross-validation) is imported by ``bench/eval.py fight`` and the tests
rather than copied; the runtime reads only the JSON (``vision.conflict.model``).
"""

"""Offline tools that build the models in ``models/`` (run by hand, never by the farm).

Kept out of the ``worker`` package so that a worker image does not ship a trainer; they
need the worker's dependencies (``pip install -e '.[worker]'``) and run from the repository
root, e.g. ``python -m model_tools.train_shapes --out models/shapes``.
"""

"""The ``fresco`` command groups, one module each; each has ``add_parser(sub)``, which
fresco/client/cli.py calls to register its commands."""

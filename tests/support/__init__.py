"""What tests and benchmarks share: the session's environment, processes and waits, the
farm as processes, private services to break, registry files, the fast timings of fault
tests, and the exactly-once invariant. Found through pytest's ``pythonpath`` setting
(pyproject.toml: ``tests`` is on the path), so modules import it as ``support.<module>``.
"""

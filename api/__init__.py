"""The HTTP API (FastAPI): records jobs in Postgres, publishes work after commit, and
answers for status and results. main.py wires; routes/<noun>.py serve."""

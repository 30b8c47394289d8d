"""Postgres: the farm's only source of truth. Tables in models.py, data access in
tenants.py and jobs.py, schema changes only through the migrations in migrations/."""

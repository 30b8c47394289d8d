"""The gallery under /ui/ (api/ui/routes.py)."""

"""`lett ui`, LET's local dashboard: runs, a project view and the paper statement of a filter.

Needs the ``server`` extra (FastAPI, uvicorn); importing this package imports neither.
"""

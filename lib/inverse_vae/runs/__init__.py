"""A run: its params checked in full and bound to its folder under reports/ (run.py); the workflow/ package runs it."""

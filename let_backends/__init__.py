"""LET's built-in energy backends, one plugin module each."""

"""LET's built-in reporters, one plugin module each."""

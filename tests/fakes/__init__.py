"""Fakes for hardware that cannot exist on a test machine, following the real interfaces."""

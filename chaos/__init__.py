"""Fault injection against the running suite: `make chaos` (see chaos.runner)."""

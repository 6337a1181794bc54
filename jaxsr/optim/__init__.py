"""Optax-style transformations and schedules."""

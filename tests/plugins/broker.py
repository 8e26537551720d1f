"""Pytest fixtures for the broker (filled in by its owner)."""

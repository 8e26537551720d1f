"""Pytest fixtures for the sandbox (filled in by its owner)."""

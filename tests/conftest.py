"""Shared pytest set-up. Each area keeps its fixtures in its own plugin module."""

pytest_plugins = [
    "tests.plugins.model",
    "tests.plugins.broker",
    "tests.plugins.sandbox",
]

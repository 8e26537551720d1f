"""The operator console: a Textual app over the actions layer."""

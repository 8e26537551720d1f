"""One module per console screen; each has a `.tcss` file beside it."""

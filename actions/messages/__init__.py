"""Message schemas on the wire: what devices publish and what the console parses.

One module per message kind; each has `build_*` (dict), `encode` (bytes) and `parse_*` (a frozen
dataclass, or `MessageError` that says which field is wrong).
"""

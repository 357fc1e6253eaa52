"""Wire-format codecs, both directions, pure (see neutral.py and DESIGN.md, Protocols)."""

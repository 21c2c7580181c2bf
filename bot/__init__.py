"""redfix: isolate red CI runs, classify them with evidence, and verify the fixes."""

__version__ = "0.1.0"

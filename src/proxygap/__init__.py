"""proxygap: what language models learn when optimized against an imperfect training signal."""

__version__ = "0.1.0"

"""valle: zero-shot text-to-speech with a neural-codec language model (VALL-E)."""

__version__ = "0.1.0"

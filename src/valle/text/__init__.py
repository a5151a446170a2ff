"""Text frontend: espeak-ng phonemes and the symbol map."""

from valle.text.phonemize import TextError, check_language, phonemize, phonemize_batch, supported_languages
from valle.text.symbols import SymbolMap

__all__ = ["SymbolMap", "TextError", "check_language", "phonemize", "phonemize_batch", "supported_languages"]

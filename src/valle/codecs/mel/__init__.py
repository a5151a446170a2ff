"""An offline codec that needs no download: log-mel frames, residual vector quantization, Griffin-Lim.

Encode: log-mel frames (one per hop, `ceil(samples / hop)` of them), normalised per mel bin, then quantized
level by level: level l picks the codeword nearest to what the levels before it left over. Decode: the sum
of the chosen codewords, un-normalised, mapped back to a linear spectrogram by the pseudo-inverse of the mel
filterbank, and given a phase by Griffin-Lim.

The codebooks are fit by k-means on a corpus (`fit_mel_codebooks`) and kept in a small file of plain tensors
(`save_codebooks` / `load_codebooks`). Nothing here is learned by gradient descent, so the codec builds
anywhere, in a second: it is what tests, the notebook and the tiny demo run on. Its audio is intelligible but
buzzy (Griffin-Lim), so use a neural codec for real voices.
"""

from valle.codecs.mel.books import (
    CODEBOOKS_FILE,
    MelCodebooks,
    load_codebooks,
    random_codebooks,
    save_codebooks,
)
from valle.codecs.mel.codec import MelCodec, parse_variant
from valle.codecs.mel.fit import fit_mel_codebooks

__all__ = [
    "CODEBOOKS_FILE",
    "MelCodebooks",
    "MelCodec",
    "fit_mel_codebooks",
    "load_codebooks",
    "parse_variant",
    "random_codebooks",
    "save_codebooks",
]

"""Dynamic batching: length buckets and a token budget per batch, so padding stays low."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from valle.utils.batch import Batch, Conditioning
from valle.utils.padding import pad_1d, pad_codes


def bucket_boundaries(lengths: Sequence[int], n_buckets: int) -> list[int]:
    """Upper length bounds that split `lengths` into `n_buckets` groups of about equal count."""
    if n_buckets <= 1 or not lengths:
        return []
    quantiles = np.quantile(np.asarray(lengths), np.linspace(0, 1, n_buckets + 1)[1:-1])
    return sorted({int(q) for q in quantiles})


T = TypeVar("T")


def batch_by_tokens(
    items: Iterable[T],
    length: Callable[[T], int],
    boundaries: Sequence[int],
    max_tokens: int,
    max_batch_size: int,
) -> Iterator[list[T]]:
    """Group items of similar length into batches whose padded size stays within `max_tokens`.

    Each item goes to the bucket of its length; a bucket is emitted as a batch as soon as one more
    item would push `count × longest` over `max_tokens` (or the count over `max_batch_size`). An
    item longer than `max_tokens` on its own forms a batch of one. The leftovers are emitted at the
    end, shortest buckets first.
    """
    buckets: list[list[T]] = [[] for _ in range(len(boundaries) + 1)]
    longest = [0] * len(buckets)
    for item in items:
        n = length(item)
        b = bisect.bisect_left(boundaries, n)
        if buckets[b] and (
            (len(buckets[b]) + 1) * max(longest[b], n) > max_tokens or len(buckets[b]) >= max_batch_size
        ):
            yield buckets[b]
            buckets[b], longest[b] = [], 0
        buckets[b].append(item)
        longest[b] = max(longest[b], n)
    yield from (bucket for bucket in buckets if bucket)


def split_count(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split into whole shares proportional to `weights` (largest remainders first); shares
    sum to `total`. With every weight 0, the first share takes it all."""
    if not weights:
        return []
    if sum(weights) == 0:
        return [total] + [0] * (len(weights) - 1)
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: shares[i] - exact[i])
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def collate(items: Sequence[dict], pad_id: int) -> Batch:
    """Items (text ids, prompt codes, response codes) → one padded batch.

    Text is padded with `pad_id`, codes with 0. A row `continues` (its prompt is its own beginning)
    when the prompt was cut from its own utterance (`data.prompt` prefix mode). `n_tokens` and
    `n_padded_tokens` are the real and the padded size of the concatenated [text; prompt; response]
    sequences, for the padding fraction; `unknown_symbols` counts the items' symbols the map read as
    `<unk>`.
    """
    continues = torch.tensor([item["key"] == item["prompt_key"] for item in items], dtype=torch.bool)
    frame_symbols = aligned = start_symbol = None
    if all("frame_symbols" in item for item in items):
        frame_symbols, _ = pad_1d([item["frame_symbols"] for item in items], 0)
        aligned = torch.tensor([item["aligned"] for item in items], dtype=torch.bool)
        start_symbol = frame_symbols[:, 0].clone()
    cond = Conditioning.pad(
        [item["text"] for item in items], [item["prompt"] for item in items], pad_id, continues, start_symbol
    )
    codes, code_lengths = pad_codes([item["codes"] for item in items])
    totals = cond.text_lengths + cond.prompt_lengths + code_lengths
    unknown: Counter = Counter()
    for item in items:
        unknown.update(item.get("unknown_symbols", {}))
    return Batch(
        cond,
        codes,
        code_lengths,
        frame_symbols=frame_symbols,
        aligned=aligned,
        keys=[item["key"] for item in items],
        prompt_keys=[item["prompt_key"] for item in items],
        speakers=[item["speaker"] for item in items],
        languages=[item["language"] for item in items],
        n_tokens=int(totals.sum()),
        n_padded_tokens=int(totals.max()) * len(items),
        unknown_symbols=dict(unknown),
    )


def padding_fraction(batches: Iterable[Batch]) -> float:
    """Share of padded positions over many batches: 1 - real tokens / padded tokens."""
    real = padded = 0
    for batch in batches:
        real += batch.n_tokens
        padded += batch.n_padded_tokens
    return 1.0 - real / padded if padded else 0.0

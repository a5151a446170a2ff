"""The bundles that cross layers: rows stay together, and Lightning moves a Batch with its `to`."""

from __future__ import annotations

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from valle.utils.batch import Batch, Conditioning


def conditioning(continues: torch.Tensor | None = None) -> Conditioning:
    text = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    prompts = [torch.full((2, n), n) for n in (2, 4, 1)]
    return Conditioning.pad(text, prompts, 0, continues)


def test_pad_right_pads_text_and_prompts_and_counts_them():
    cond = conditioning()
    assert cond.text.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]] and cond.text_lengths.tolist() == [3, 1, 2]
    assert cond.prompt.shape == (3, 2, 4) and cond.prompt_lengths.tolist() == [2, 4, 1]
    assert cond.size == 3 and cond.continuing.tolist() == [False, False, False]


def test_select_and_repeat_rows_keep_every_field_of_a_row_together():
    cond = conditioning(torch.tensor([True, False, True]))
    picked = cond.select(torch.tensor([2, 0]))
    assert picked.text.tolist() == [[5, 6, 0], [1, 2, 3]] and picked.prompt_lengths.tolist() == [1, 2]
    assert picked.continuing.tolist() == [True, True]
    beams = cond.repeat_rows(2)
    assert beams.text_lengths.tolist() == [3, 3, 1, 1, 2, 2]
    assert beams.continuing.tolist() == [True, True, False, False, True, True]
    assert conditioning().select(torch.tensor([1])).continues is None  # "not given" stays not given


def test_rolled_text_moves_only_the_text():
    cond = conditioning()
    rolled = cond.with_text_rolled()
    assert rolled.text_lengths.tolist() == [2, 3, 1] and torch.equal(rolled.prompt, cond.prompt)


def test_lightning_moves_a_batch_through_its_to():
    cond = conditioning(torch.tensor([True, False, False]))
    batch = Batch(cond, torch.zeros(3, 2, 5, dtype=torch.long), torch.tensor([5, 3, 4]), keys=["a", "b", "c"])
    moved = move_data_to_device(batch, torch.device("meta"))  # what Lightning's default transfer does
    assert isinstance(moved, Batch) and moved.keys == ["a", "b", "c"]
    tensors = (moved.codes, moved.code_lengths, moved.cond.text, moved.cond.prompt, moved.cond.continues)
    assert all(t is not None and t.device.type == "meta" for t in tensors)
    assert batch.codes.device.type == "cpu"  # a copy: the original stays where it was

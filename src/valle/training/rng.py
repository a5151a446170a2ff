"""Random-number-generator state as checkpoint data, so a resumed run draws what it would have.

Dropout draws from the global generators; a run resumed from a checkpoint must start its next step
from the state the interrupted run had there, or its losses drift away from an uninterrupted run's.
The state is plain data and tensors: checkpoints load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist


def capture_rng_state() -> dict:
    """The state of every global generator a training step draws from (torch CPU and CUDA, NumPy, Python)."""
    numpy_state = np.random.get_state()  # legacy form: ("MT19937", uint32 [624], int, int, float)
    assert isinstance(numpy_state, tuple)
    _, keys, pos, has_gauss, gauss = numpy_state
    version, internal, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss": python_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # never initialise CUDA just to read it
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Set the global generators to a `capture_rng_state()` result."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_from_ranks(state: dict) -> list[dict]:
    """Every rank's `state`, indexed by rank (a collective: every rank must call it), or `[state]` alone.

    Each rank draws its own dropout masks, and only rank 0 writes the checkpoint.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    states: list = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states

"""Torch work in a thread of its own: the result comes back, and torch's OpenMP workers end with it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

from valle.utils.threads import off_loop, run_in_own_thread


def test_the_result_and_the_exception_come_back_from_a_thread_that_has_ended() -> None:
    ran_in: list[threading.Thread] = []

    def work(a: int, b: int = 0) -> int:
        ran_in.append(threading.current_thread())
        return a + b

    assert run_in_own_thread(work, 2, b=3) == 5
    assert ran_in[0] is not threading.current_thread()
    ran_in[0].join(timeout=5)
    assert not ran_in[0].is_alive()

    def refuse() -> None:
        raise ValueError("bad voice")

    with pytest.raises(ValueError, match="bad voice"):
        run_in_own_thread(refuse)


def test_off_loop_leaves_the_event_loop_free_while_the_work_runs() -> None:
    release = threading.Event()

    async def main() -> list[str]:
        order: list[str] = []
        work = asyncio.ensure_future(off_loop(lambda: release.wait(5) and order.append("work")))
        await asyncio.sleep(0.05)
        order.append("loop")  # the loop ran on while the work waited
        release.set()
        await work
        return order

    assert asyncio.run(main()) == ["loop", "work"]


POOL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from valle.utils.threads import run_in_own_thread

    torch.set_num_threads(2)  # a pool of one worker even on a single core

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    def work():
        torch.randn(1_000_000).exp().sum()

    def settled(expected):
        deadline = time.time() + 5
        while os_threads() != expected and time.time() < deadline:
            time.sleep(0.01)
        return os_threads()

    before = os_threads()
    run_in_own_thread(work)
    after_own_thread = settled(before)
    work()  # in the main thread, which lives on
    print(before, after_own_thread, os_threads())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")
def test_torch_workers_started_in_an_own_thread_end_with_it() -> None:
    """What a server relies on: its main thread runs no torch kernels, so it owns no OpenMP workers whose
    presence would slow the engine's (valle.utils.threads)."""
    result = subprocess.run(
        [sys.executable, "-c", POOL_SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    before, after_own_thread, after_main = map(int, result.stdout.split())
    assert after_own_thread == before  # the thread and its workers are gone
    assert after_main > before  # the main thread keeps its worker: what the helper avoids

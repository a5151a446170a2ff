"""Blocking torch work in a thread of its own, which ends with the work.

torch's CPU kernels run on OpenMP (libgomp in the Linux wheels), which keeps a pool of worker threads
for each thread that ever ran a parallel region, for as long as that thread lives. Once the process
holds more of them than the machine has cores, libgomp stops letting idle workers spin and puts them to
sleep after each region: every small kernel of a decode step then waits for a sleeping worker to wake.
On 2 cores, a thread that decodes while the main thread holds a pool runs a `small` model's one-token
step 2.65x slower (benchmarks/thread_pools.py; docs/benchmarks.md, "One pool of OpenMP workers").

So a server keeps one long-lived thread for torch, its engine, and gives any other torch work
(loading the model at startup, encoding an uploaded voice) a thread that ends when the work does: the
pool ends with it. `asyncio.to_thread` would not do: its executor's threads live on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def in_own_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Future[R]:
    """Start `fn(*args, **kwargs)` in a new thread that ends with it; its result or exception is the
    returned future's."""
    future: Future[R] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(error)

    threading.Thread(target=run, name=f"valle-{getattr(fn, '__name__', 'work')}", daemon=True).start()
    return future


def run_in_own_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` from a thread that ends with it: the caller's thread runs no torch kernels."""
    return in_own_thread(fn, *args, **kwargs).result()


async def off_loop(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Await `fn(*args, **kwargs)` run in a thread of its own (see the module's docstring), not on the
    event loop's thread nor in a pool thread that outlives it."""
    return await asyncio.wrap_future(in_own_thread(fn, *args, **kwargs))

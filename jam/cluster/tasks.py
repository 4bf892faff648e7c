"""Stopping a cluster process's background tasks, boundedly.

A task cancelled inside a library call that catches ``CancelledError`` (redis-py's connection
handling can, mid-command) goes on running: awaiting it would hang a shutdown forever. So
tasks are cancelled, awaited for a few seconds, and any left are logged and cancelled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def stop(tasks: Iterable[asyncio.Task[None]], timeout: float = 3.0) -> None:
    """Cancel ``tasks`` (never the caller's own) and wait at most ``timeout`` for them."""
    current = asyncio.current_task()
    tasks = [t for t in tasks if t is not current and not t.done()]
    deadline = asyncio.get_running_loop().time() + timeout
    while tasks:
        for task in tasks:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            for task in tasks:
                log.error("task %s did not stop when cancelled; leaving it", task.get_name())
            return
        _, pending = await asyncio.wait(tasks, timeout=min(0.5, left))
        tasks = list(pending)  # cancel again: one cancellation may have been swallowed


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """``event.wait()`` for at most ``timeout`` seconds; whether it was set. (Unlike
    ``wait_for`` on Python 3.11, a cancellation here is never turned into a timeout.)"""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    return event.is_set()

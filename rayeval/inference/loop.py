"""The event loop where an actor's requests run: a thread of the actor's own, never blocked by Ray Data.

An actor of Ray Data with an async `__call__` shares one event loop between all its batches, and
Ray Data's own code blocks that loop whenever one batch's answers wait to be handed on: every
request of the actor then stands still, its permits held, while the model has nothing to do. The
request actors (inference, judging, pairwise) are therefore plain callables whose batches each wait
in a Ray Data thread of their own (`enable_true_multi_threading`) for their coroutine, which runs
on this loop; a batch waiting to be handed on blocks only its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rayeval.inference.http import HttpClient

__all__ = ["RequestLoop", "close_requests"]

T = TypeVar("T")


class RequestLoop:
    """An asyncio loop running in a daemon thread; `run` waits for a coroutine on it from any thread."""

    def __init__(self, name: str = "rayeval-requests"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self, client: HttpClient | None, timeout: float = 5.0) -> None:
        """Close `client`'s connections on the loop, then stop the loop (an actor's `__del__`: Ray Data calls
        it when a pool shuts down, and an unclosed session would print a warning on the user's terminal)."""
        if self.loop.is_closed():
            return
        try:
            if client is not None:
                asyncio.run_coroutine_threadsafe(client.close(), self.loop).result(timeout)
        except Exception:  # noqa: BLE001 (an actor going away: nothing left to tell)
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)


def close_requests(actor: Any) -> None:
    """A request actor's `__del__`: close its HTTP client (`_client`) and stop its loop (`_loop`), whatever
    its constructor got to."""
    loop = getattr(actor, "_loop", None)
    if loop is not None:
        loop.close(getattr(actor, "_client", None))

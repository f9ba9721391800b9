"""Fault injection for the OpenAI stub server: which completion requests fail, and how.

:class:`FaultInjector` holds one server's fault configuration (random faults,
per-prompt transient faults and ``fail_first``), draws the fault of each
completion request, counts the faults served and builds the failing responses.
The server (``tests/support/openai_server.py``) owns the lock that guards it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.support.openai_wire import completion_envelope, error_response, prompt_text

__all__ = ["FAULT_KINDS", "FaultInjector", "check_kind"]

FAULT_KINDS: tuple[str, ...] = ("500", "503", "429", "timeout", "malformed", "malformed_json")
"""Fault kinds accepted by :meth:`OpenAIStubServer.set_faults` and ``fail_first``."""


def check_kind(kind: str) -> None:
    """Raises ValueError unless ``kind`` is one of ``FAULT_KINDS``."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")


class FaultInjector:
    """The fault configuration, draws and counts of one stub server.

    Its state is guarded by the server's lock, so that the server's stats see
    it together with the server's own counters: the public methods and
    properties take the lock; the ``*_locked`` methods expect the caller to
    hold it.

    Args:
        lock: The server's lock.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        # Fault configuration (guarded by _lock).
        self._fault_rate = 0.0
        self._fault_kinds: tuple[str, ...] = ("500",)
        self._retry_after: float | None = None
        self._seed = 0
        self._hang_seconds = 30.0
        self._rng = random.Random(0)
        self._fail_first_n = 0
        self._per_prompt_failures: int | None = None
        self._prompt_failures: dict[str, int] = {}
        self._fail_first_kind = "500"
        # Counts (guarded by _lock).
        self._faults: dict[str, int] = {}

    # ------------------------------------------------------------- configuration

    def set_faults(
        self,
        *,
        rate: float,
        kinds: Sequence[str],
        retry_after: float | None,
        seed: int,
        hang_seconds: float,
        per_prompt_failures: int | None,
    ) -> None:
        """Configures random fault injection; reseeds the fault RNG.

        The arguments are those of :meth:`OpenAIStubServer.set_faults`, which
        holds their defaults.

        Raises:
            ValueError: On a rate outside [0, 1] or an unknown kind.
        """
        kinds = tuple(str(k) for k in kinds)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be within [0, 1]")
        if not kinds:
            raise ValueError("fault kinds must not be empty")
        for kind in kinds:
            check_kind(kind)
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if hang_seconds < 0:
            raise ValueError("hang_seconds must be >= 0")
        with self._lock:
            self._fault_rate = float(rate)
            self._fault_kinds = kinds
            self._retry_after = None if retry_after is None else float(retry_after)
            self._seed = int(seed)
            self._hang_seconds = float(hang_seconds)
            self._rng = random.Random(self._seed)
            self._per_prompt_failures = per_prompt_failures
            self._prompt_failures = {}

    def fail_first(self, n: int, kind: str) -> None:
        """Makes the next ``n`` completion requests fail with ``kind``.

        The arguments are those of :meth:`OpenAIStubServer.fail_first`, which
        holds their defaults.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        check_kind(kind)
        with self._lock:
            self._fail_first_n = int(n)
            self._fail_first_kind = kind

    def pending_fail_first(self) -> tuple[int, str]:
        """Returns the ``fail_first`` requests still to fail and their kind."""
        with self._lock:
            return self._fail_first_n, self._fail_first_kind

    @property
    def hang_seconds(self) -> float:
        """How long a ``"timeout"`` fault stalls before answering."""
        with self._lock:
            return self._hang_seconds

    def config_locked(self) -> dict[str, Any]:
        """Returns the fault configuration, in the server's config keys."""
        return {
            "fault_rate": self._fault_rate,
            "fault_kinds": list(self._fault_kinds),
            "retry_after": self._retry_after,
            "seed": self._seed,
            "hang_seconds": self._hang_seconds,
            "fail_first": self._fail_first_n,
            "fail_first_kind": self._fail_first_kind,
        }

    # ------------------------------------------------------------------ counts

    @property
    def faulted_prompts(self) -> set[str]:
        """Prompts that got at least one fault in per-prompt mode."""
        with self._lock:
            return set(self._prompt_failures)

    def counts(self) -> dict[str, int]:
        """Returns how many faults of each kind were served."""
        with self._lock:
            return self.counts_locked()

    def counts_locked(self) -> dict[str, int]:
        """Returns a copy of the fault counts."""
        return dict(self._faults)

    def reset_counts_locked(self) -> None:
        """Clears the fault counts; configuration and pending ``fail_first`` stay."""
        self._faults = {}

    # ------------------------------------------------------------------- draws

    def _draw_prompt_fault(self, prompt: str) -> str | None:
        rng = random.Random(f"{self._seed}:{prompt}")
        if rng.random() >= self._fault_rate:
            return None
        done = self._prompt_failures.get(prompt, 0)
        if done >= (self._per_prompt_failures or 0):
            return None
        self._prompt_failures[prompt] = done + 1
        return rng.choice(self._fault_kinds)

    def draw(self, body: dict[str, Any] | None = None) -> str | None:
        """Returns the fault kind of the completion request ``body``; None for no fault."""
        with self._lock:
            if self._fail_first_n > 0:
                self._fail_first_n -= 1
                kind: str | None = self._fail_first_kind
            elif self._per_prompt_failures is not None:
                kind = self._draw_prompt_fault(prompt_text(body or {}))
            elif self._fault_rate > 0 and self._rng.random() < self._fault_rate:
                kind = self._rng.choice(self._fault_kinds)
            else:
                kind = None
            if kind is not None:
                self._faults[kind] = self._faults.get(kind, 0) + 1
            return kind

    def response(self, kind: str, body: dict[str, Any], *, chat: bool, ids: Iterator[int]) -> Response:
        """Builds the failing response of a fault.

        Args:
            kind: A fault kind other than ``"timeout"`` (which only stalls the answer).
            body: The (valid) request body.
            chat: Whether it is a ``/v1/chat/completions`` request (else ``/v1/completions``).
            ids: The server's response numbers; a ``"malformed_json"`` response takes the next one.
        """
        if kind == "500":
            return error_response(500, "The server had an error while processing your request.", type_="server_error")
        if kind == "503":
            return error_response(
                503,
                "The engine is currently overloaded, please try again later.",
                type_="server_error",
                code="service_unavailable",
            )
        if kind == "429":
            with self._lock:
                retry_after = self._retry_after
            headers = None
            if retry_after is not None:
                headers = {
                    "Retry-After": f"{retry_after:g}",
                    "retry-after-ms": str(round(retry_after * 1000)),
                }
            return error_response(
                429,
                "Rate limit reached for requests.",
                type_="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if kind == "malformed":
            return Response(b'{"id": "cmpl-broken", "choices": [{"index": 0, "mess', media_type="application/json")
        # "malformed_json": valid JSON without "choices".
        return JSONResponse(completion_envelope(body, chat=chat, ids=ids))

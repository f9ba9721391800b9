"""The audit log of `rayeval server`: every state-changing call, who made it and how it ended.

One record per call (submit, stop, restart, copy, delete; token create and revoke), written as its own
file under the server location's `audit/` folder (rayeval.server.store): who (a token's name, or
`local:USER` for the command line on the head), what, which task, when, the outcome and one line of
detail. Records hold names, never tokens; their detail is scrubbed of the credentials the call carried
before it is written (rayeval.redaction).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rayeval.redaction import masked
from rayeval.server.store import ServerStore

__all__ = ["ACTIONS", "Action", "AuditLog", "AuditRecord", "Outcome", "format_audit"]

#: What is audited.
Action = Literal["submit", "stop", "restart", "copy", "delete", "token-create", "token-revoke"]
ACTIONS: tuple[Action, ...] = ("submit", "stop", "restart", "copy", "delete", "token-create", "token-revoke")
#: How a call ended: done, refused (the task's state or a rule forbids it), not-found, invalid input, or
#: an error of the server or the cluster.
Outcome = Literal["ok", "refused", "not-found", "invalid", "error"]
_FOLDER = "audit"
#: Longest detail kept (after scrubbing).
DETAIL_CHARS = 500


class AuditRecord(BaseModel):
    """One audited call."""

    model_config = ConfigDict(extra="forbid")

    at: datetime = Field(description="When the call was made (UTC).")
    who: str = Field(description="The token's name (never the token), or `local:USER` for the command line.")
    action: Action = Field(description="What was asked.")
    task: str | None = Field(None, description="The task it was about: the id or name asked for, or the new task's id.")
    outcome: Outcome = Field(description="How it ended.")
    detail: str = Field("", description="One line: the new task, the state reached, or why it was refused.")


class AuditLog:
    """Appends to, and reads, the audit log in a server location.

    Args:
        store: The server location (default: `$RAYEVAL_HOME/server`).
    """

    def __init__(self, store: ServerStore | str | None = None):
        self.store = store if isinstance(store, ServerStore) else ServerStore(store)

    def record(
        self,
        who: str,
        action: Action,
        task: str | None,
        outcome: Outcome,
        detail: str = "",
        *,
        secrets: Iterable[str | None] = (),
    ) -> AuditRecord:
        """Append one record; `secrets` are masked out of `detail` first."""
        entry = AuditRecord(
            at=datetime.now(timezone.utc), who=who, action=action, task=task, outcome=outcome,
            detail=masked(" ".join(detail.split()), list(secrets), DETAIL_CHARS),
        )  # fmt: skip
        stamp = entry.at.strftime("%Y%m%dT%H%M%S.%fZ")
        self.store.write(_FOLDER, f"{stamp}-{uuid.uuid4().hex[:8]}.json", entry.model_dump(mode="json"))
        return entry

    def records(
        self, *, task: str | None = None, who: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """The records, oldest first (of one task, or by one name, if given; the last `limit` of them)."""
        names = self.store.names(_FOLDER)
        out = []
        for name in names:
            data = self.store.read(_FOLDER, name)
            if data is None:
                continue
            entry = AuditRecord.model_validate(data)
            if (task is None or entry.task == task) and (who is None or entry.who == who):
                out.append(entry)
        return out[-limit:] if limit else out


def format_audit(records: list[AuditRecord]) -> str:
    """The records as a table, one line each."""
    if not records:
        return "no audited calls yet"
    lines = [f"{'WHEN (UTC)':<20} {'WHO':<20} {'ACTION':<13} {'OUTCOME':<10} {'TASK':<44} DETAIL"]
    for r in records:
        when = r.at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when:<20} {r.who:<20} {r.action:<13} {r.outcome:<10} {r.task or '-':<44} {r.detail}")
    return "\n".join(lines)

"""API tokens of `rayeval server`: who a request comes from, and the tags it acts with.

A token reads `rve_<id>_<secret>`: `id` (12 hex digits) names its record, `secret` is 256 random bits
(`secrets.token_urlsafe(32)`). It is shown once, when it is created; the server location keeps only the
SHA-256 of the whole token beside its name, tags, admin flag and dates (`tokens/<id>.json`). A plain hash is
enough for secrets of 256 random bits (no dictionary to try, and nothing slow to gain); the comparison is
constant-time (`hmac.compare_digest`).

A team token carries at least one tag: the server acts with exactly those tags. An admin token sees every
task. Revoking keeps the record (with `revoked_at`), so the audit log's names stay explained. The server
reads the records again at most every `cache_s` seconds, so new and revoked tokens take effect without a
restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rayeval.errors import RayevalError
from rayeval.server.store import ServerStore
from rayeval.spec.base import NAME_HINT, NAME_PATTERN

__all__ = [
    "PREFIX",
    "ApiToken",
    "Caller",
    "IssuedToken",
    "TokenError",
    "TokenStore",
    "hash_token",
    "parse_token",
]

#: Every token starts with it (so that a leaked one is easy to recognise, and to scan for).
PREFIX = "rve"
_FOLDER = "tokens"
_TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{40,}})$")


class TokenError(RayevalError):
    """A token cannot be created or revoked as asked (a name taken, no such token, a team token without tags)."""

    exit_code = 2


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ApiToken(BaseModel):
    """One API token's stored record (never its secret)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{12}$", description="The token's public id (the part after `rve_`).")
    name: str = Field(pattern=NAME_PATTERN, description="Who holds it: the name the audit log shows for its calls.")
    tags: list[str] = Field(
        default_factory=list,
        description="The tags the server acts with for this token: the tasks it may see and the tags of the tasks "
        "it creates. At least one for a team token; ignored for an admin token.",
    )
    admin: bool = Field(False, description="Sees and acts on every task, whatever its tags.")
    created_at: datetime = Field(description="When it was created (UTC).")
    expires_at: datetime | None = Field(None, description="When it stops being accepted (UTC); None: never.")
    revoked_at: datetime | None = Field(None, description="When it was revoked (UTC); None: it was not.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole token, hex.")

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, tags: list[str]) -> list[str]:
        return sorted({t.strip() for t in tags if t and t.strip()})

    @model_validator(mode="after")
    def _team_tokens_carry_tags(self) -> ApiToken:
        if not self.admin and not self.tags:
            raise ValueError("a team token needs at least one tag (an admin token sees everything: --admin)")
        return self

    def active(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired."""
        now = now or _now()
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def status(self, now: datetime | None = None) -> str:
        """'active', 'expired' or 'revoked'."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.active(now) else "expired"


class IssuedToken(BaseModel):
    """A token just created: its record and, this once, the token itself."""

    model_config = ConfigDict(extra="forbid")

    record: ApiToken = Field(description="What is stored.")
    token: str = Field(description="The token to hand to its holder; not stored anywhere, not shown again.")


class Caller(BaseModel):
    """Who a request comes from, once its token was accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The token's name.")
    tags: list[str] = Field(description="The token's tags (an admin's are informative only).")
    admin: bool = Field(description="Sees and acts on every task.")
    expires_at: datetime | None = Field(None, description="When the token stops being accepted (UTC).")

    @property
    def visible_tags(self) -> list[str] | None:
        """The tags to present to the coordinator and the results readers: None (everything) for an admin,
        else the token's tags, never empty (an empty list would read as 'no tags presented' elsewhere)."""
        if self.admin:
            return None
        if not self.tags:  # refused by ApiToken already; never widen a team token to everything
            raise RayevalError(f"token {self.name} carries no tags")
        return list(self.tags)


def hash_token(token: str) -> str:
    """The SHA-256 of a token, hex (what the server location keeps)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_token(token: str) -> str | None:
    """A token's public id, or None when it is not shaped like one of ours."""
    match = _TOKEN.match(token or "")
    return match.group(1) if match else None


class TokenStore:
    """The API tokens in a server location: create, list, revoke, and check a presented token.

    Args:
        store: The server location (default: `$RAYEVAL_HOME/server`).
        cache_s: Seconds `verify` trusts what it read last before reading the records again.
    """

    def __init__(self, store: ServerStore | str | None = None, *, cache_s: float = 3.0):
        self.store = store if isinstance(store, ServerStore) else ServerStore(store)
        self.cache_s = cache_s
        self._cache: dict[str, ApiToken] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def tokens(self) -> list[ApiToken]:
        """Every token record, oldest first (revoked and expired ones included)."""
        records = []
        for name in self.store.names(_FOLDER):
            data = self.store.read(_FOLDER, name)
            if data is not None:
                records.append(ApiToken.model_validate(data))
        return sorted(records, key=lambda t: t.created_at)

    def create(
        self,
        name: str,
        tags: list[str] | None = None,
        *,
        admin: bool = False,
        expires_in: timedelta | None = None,
        expires_at: datetime | None = None,
    ) -> IssuedToken:
        """Issue a token; the returned `token` is the only copy of it.

        Args:
            name: Who holds it (unique among the active tokens).
            tags: The tags it acts with (at least one, unless `admin`).
            admin: It sees and acts on every task.
            expires_in: It expires this long from now (None: never).
            expires_at: It expires then (instead of `expires_in`).

        Raises:
            TokenError: an active token has that name, or a team token has no tags.
        """
        taken = [t for t in self.tokens() if t.name == name and t.active()]
        if taken:
            raise TokenError(
                f"an active token is named {name} already (id {taken[0].id}); revoke it first "
                f"(`rayeval server token revoke {name}`) or choose another name"
            )
        token_id = secrets.token_hex(6)
        token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        created = _now()
        if expires_in is not None:
            expires_at = created + expires_in
        try:
            record = ApiToken(
                id=token_id, name=name, tags=list(tags or []), admin=admin, created_at=created,
                expires_at=expires_at, sha256=hash_token(token),
            )  # fmt: skip
        except ValueError as e:  # pydantic's ValidationError is one
            raise TokenError(_first_error(e, name)) from None
        self.store.write(_FOLDER, f"{token_id}.json", record.model_dump(mode="json"))
        self._read_at = float("-inf")
        return IssuedToken(record=record, token=token)

    def revoke(self, name_or_id: str) -> list[ApiToken]:
        """Revoke the active tokens with this name (or this id); returns them as revoked.

        Raises:
            TokenError: no active token has that name or id.
        """
        hits = [t for t in self.tokens() if t.active() and name_or_id in (t.name, t.id)]
        if not hits:
            raise TokenError(f"no active token is named {name_or_id} (nor has that id); `rayeval server token list`")
        revoked = []
        for t in hits:
            t = t.model_copy(update={"revoked_at": _now()})
            self.store.write(_FOLDER, f"{t.id}.json", t.model_dump(mode="json"))
            revoked.append(t)
        self._read_at = float("-inf")
        return revoked

    def verify(self, token: str | None) -> Caller | None:
        """The caller a presented token stands for, or None (missing, malformed, unknown, forged, revoked or
        expired: the reason is not told, to the caller or anyone)."""
        token_id = parse_token(token or "")
        record = self._known().get(token_id or "")
        digest = hash_token(token or "")
        expected = record.sha256 if record is not None else "0" * 64  # compare anyway: same work either way
        if not hmac.compare_digest(digest, expected) or record is None or not record.active():
            return None
        return Caller(name=record.name, tags=record.tags, admin=record.admin, expires_at=record.expires_at)

    def _known(self) -> dict[str, ApiToken]:
        with self._lock:
            if time.monotonic() - self._read_at > self.cache_s:
                self._cache = {t.id: t for t in self.tokens()}
                self._read_at = time.monotonic()
            return self._cache


def _first_error(error: ValueError, name: str) -> str:
    """A token record's validation error in a line (never echoing values)."""
    errors = getattr(error, "errors", None)
    if errors is None:
        return str(error)
    first = errors(include_url=False, include_input=False)[0]
    field = ".".join(str(p) for p in first["loc"])
    if field == "name":
        return f"token name {name!r}: {NAME_HINT}"
    return first["msg"].removeprefix("Value error, ") + (f" (field {field})" if field else "")

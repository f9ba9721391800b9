"""Credentials in a task: `${env:NAME}` references, resolved where the task runs and never stored."""

from __future__ import annotations

import os
import re

from pydantic import SecretStr

from rayeval.errors import SpecError

__all__ = ["env_references", "redact_secret", "resolve_secret"]

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def env_references(value: str) -> list[str]:
    """The NAMEs of the `${env:NAME}` references in a value."""
    return _ENV_REF.findall(value)


def redact_secret(value: str) -> str:
    """Keep a value made only of `${env:NAME}` references and an auth scheme; hide anything else."""
    literal = _ENV_REF.sub("", value).strip()
    if _ENV_REF.search(value) and literal.lower() in {"", "bearer", "basic", "token"}:
        return value
    return "***"


def resolve_secret(value: SecretStr | None, *, field: str) -> str | None:
    """Substitute `${env:NAME}` references from the environment.

    Raises:
        SpecError: a referenced variable is not set (the message names it, never a value).
    """
    if value is None:
        return None
    raw = value.get_secret_value()

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SpecError(f"environment variable {name} is not set; export it where the task runs", field=field)
        return os.environ[name]

    return _ENV_REF.sub(sub, raw)

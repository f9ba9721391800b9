"""What every spec model shares: unknown keys are errors, names follow one pattern."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "DEFAULT_OUTPUT",
    "NAME_HINT",
    "NAME_PATTERN",
    "SpecModel",
    "format_validation_error",
    "metrics_allowed",
    "strings_allowed",
    "strings_as",
    "validation_summary",
]

DEFAULT_OUTPUT = "rayeval-results"
#: Names of tasks, sets, models and metrics outputs (they become folder names and Parquet partitions).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
NAME_HINT = "use letters, digits, '.', '_' and '-' only (at most 128 characters)"


def _field_names_too(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON Schema of a spec model names every field both ways a task file may (MAX_TOKENS and
    max_tokens), as validation accepts both."""
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        if field.alias and field.alias != name and field.alias in properties:
            properties.setdefault(name, properties[field.alias])


def strings_allowed(schema: dict[str, Any]) -> None:
    """A list field's JSON Schema when its entries may also be bare strings (`strings_as`, the short form)."""
    schema["items"] = {"anyOf": [{"type": "string"}, schema["items"]]}


def metrics_allowed(schema: dict[str, Any]) -> None:
    """The metrics list's JSON Schema: bare names, metric entries, and `{evaluate: PATH, outputs: [...]}`."""
    strings_allowed(schema)
    schema["items"]["anyOf"].append(
        {
            "type": "object",
            "required": ["evaluate", "outputs"],
            "properties": {
                "evaluate": {"type": "string", "description": "A Hugging Face evaluate module: folder or .py."},
                "outputs": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "kwargs": {"type": "object"},
            },
        }
    )


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, aliases and field names both accepted."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, validate_default=True, json_schema_extra=_field_names_too
    )


def strings_as(value: Any, key: str) -> Any:
    """A list's bare strings as {key: string} (the short form of list entries)."""
    if isinstance(value, list):
        return [{key: v} if isinstance(v, str) else v for v in value]
    return value


def format_validation_error(err: ValidationError, *, friendly: bool = True) -> list[tuple[str, str]]:
    """(field path, message) pairs of a pydantic error, without echoing input values; `friendly` words
    unknown keys, missing fields and bad names the way task files need."""
    out = []
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if friendly and e["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling against the task-file reference in README.md"
        elif friendly and e["type"] == "missing":
            msg = "required field is missing"
        elif friendly and e["type"] == "string_pattern_mismatch":
            msg = f"invalid name: {NAME_HINT}"
        out.append((loc, msg))
    return out


def validation_summary(err: ValidationError) -> str:
    """'field: message; field: message' of a pydantic error, in pydantic's own words."""
    return "; ".join(f"{loc}: {msg}" for loc, msg in format_validation_error(err, friendly=False))

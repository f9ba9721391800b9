"""What travels with a Custom Evaluation program: its command line, its environment (the platform's
EVAL_* variables), its image (`runtime_env`), its local mounts as one archive, and the fingerprint of
all that decides its metrics."""

from __future__ import annotations

import hashlib
import json
import shlex
import tarfile
from pathlib import Path
from typing import Any

from rayeval.errors import SpecError
from rayeval.inference.client import HostedEndpoint, resolve_endpoint
from rayeval.spec import CustomConfigSpec, ModelSpec

__all__ = ["MAX_MOUNTS_MB", "command_line", "config_fingerprint", "digest", "pack_mounts", "program_env", "runtime_env"]

#: The most a configuration's shipped mounts may take (larger data: a shared filesystem).
MAX_MOUNTS_MB = 512


def digest(data: Any) -> str:
    """A short digest of JSON-able data."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _content_digest(path: Path) -> str:
    """Names and contents of a mounted file or folder (so an edited program is a new configuration)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def config_fingerprint(cfg: CustomConfigSpec) -> str:
    """What decides a configuration's metrics: image, command, parameters, variables, sets, the
    content of its shipped mounts (shared mounts by path) and `direct` when set (the task's parameters
    are then not applied). Resources and time limits are left out."""
    mounts = [
        {"path": m.path, "shared": True}
        if m.shared
        else {"name": Path(m.path).name, "content": _content_digest(Path(m.path))}
        for m in cfg.mounts
    ]
    keep = cfg.model_dump(mode="json", include={"image", "image_version", "command", "parameters", "env"})
    if cfg.direct:  # only when set: the fingerprints of configurations written before the switch stay
        keep["direct"] = True
    return digest({**keep, "sets": sorted(cfg.evaluation_sets), "mounts": mounts})


def runtime_env(cfg: CustomConfigSpec) -> dict[str, Any]:
    """The Ray `runtime_env` of a configuration's task: its image (`image_uri`), if any."""
    return {"image_uri": cfg.image_uri} if cfg.image else {}


def pack_mounts(cfg: CustomConfigSpec, scratch: Path) -> bytes | None:
    """The configuration's local mounts as one tar archive (each under its own name), sent with
    the task; None when it has none.

    Raises:
        SpecError: the mounts are larger than MAX_MOUNTS_MB.
    """
    local = [m for m in cfg.mounts if not m.shared]
    if not local:
        return None
    archive = scratch / "mounts.tar"
    with tarfile.open(archive, "w") as tar:
        for m in local:
            tar.add(m.path, arcname=m.placed)  # its target in the working directory (default its own name)
    size = archive.stat().st_size
    if size > MAX_MOUNTS_MB * 1024 * 1024:
        raise SpecError(
            f"configuration '{cfg.name}': its mounts take {size / 2**20:.0f} MiB, over the {MAX_MOUNTS_MB} MiB "
            "shipped with a task; put large data on a filesystem every node sees and mount it with `shared: true`"
        )
    return archive.read_bytes()


def command_line(cfg: CustomConfigSpec) -> str:
    """The start command with the parameters appended as `--name value`."""
    args = [
        f"--{k} {shlex.quote(str(v).lower() if isinstance(v, bool) else str(v))}" for k, v in cfg.parameters.items()
    ]
    return " ".join([cfg.command, *args])


def program_env(
    cfg: CustomConfigSpec,
    model: ModelSpec,
    auth_value: str | None,
    hosted: HostedEndpoint | None,
    tags: list[str] | None = None,
    gateway: str | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """(variables, secret variables) of one pair: the platform's EVAL_* (the task's tags as EVAL_TAGS,
    comma-separated) and the configuration's own.

    With `gateway` (the pair's /v1 base on the task's gateway, rayeval.custom.gateway) EVAL_INFERENCE_URL is
    the gateway's chat-completions URL and the program gets no credential (the gateway holds it); without
    (a `direct` configuration), the model's own URL and, for a model given by URL, its credential."""
    endpoint = resolve_endpoint(model, auth_value, hosted=hosted)
    mounts = {Path(m.path).name: m.placed for m in cfg.mounts}
    base = gateway or endpoint.base_url
    env = {
        **cfg.env,
        "EVAL_INFERENCE_URL": f"{base}/chat/completions",
        "EVAL_MODEL_NAME": endpoint.model_id,
        "EVAL_AUTHORIZATION_HEADER_KEY": model.auth_header_key,
        "EVAL_CONFIG_NAME": cfg.name,
        "EVAL_EVALUATION_SETS": ",".join(cfg.evaluation_sets),
        "EVAL_MOUNTS": json.dumps(mounts),
        "EVAL_TAGS": ",".join(tags or []),
    }
    given = hosted is None and gateway is None  # the model's own credential, to a program that calls it itself
    secret = {"EVAL_AUTHORIZATION_HEADER_VALUE": (auth_value or "") if given else ""}
    return env, secret

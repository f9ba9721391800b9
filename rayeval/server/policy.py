"""What a team token may submit through `rayeval server`, checked before anything is read or run.

A task file is more than data: it names files the cluster reads with its own permissions, credentials
resolved from the cluster's environment, and (in some features) code the cluster runs. A team that could
name any file could read another team's results, or the cluster's own token, through a judge prompt or an
evaluation set. So for a team token (admins are trusted with all of it):

- its task carries exactly the token's tags (`tags` in the file are replaced);
- every file it names (sets, prediction files, judge prompts, metric quick-configuration, scripts,
  checkpoints, tokenizers, mounts, weights) is an absolute path or a URI under one of the server's data roots
  (`{tag}` in a root stands for each of the token's tags), and never in (or above) rayeval's own files:
  the results location, the server location, $RAYEVAL_HOME;
  this is checked on the raw file before it is parsed (parsing reads judge prompts and the metric
  quick-configuration), and again on the parsed task (files a quick-configuration named);
- its results go to the server's results location (or a folder under it);
- credentials are written literally: a `${env:NAME}` reference would read the cluster's environment;
- features that run the task's own code on the cluster (mode `custom`, metric pre/post-processing scripts,
  `evaluate` modules, vLLM engine settings beyond tuning, such as `trust_remote_code`) are refused unless the
  server allows code (`allow_code`): code on the cluster is direct Ray access, which is what the server exists
  to keep teams from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from rayeval.errors import SpecError
from rayeval.server.config import ServerConfig
from rayeval.server.tokens import Caller
from rayeval.spec import TaskSpec, env_references

__all__ = [
    "ENGINE_KWARGS_ALLOWED",
    "PATH_KEYS",
    "PolicyError",
    "check_paths",
    "check_spec",
    "named_files",
    "prepare_data",
]

#: Keys whose values (at any depth of a task file) are files the cluster reads (`tokenizer`: a service model's
#: tokenizer folder, for log-likelihood sets).
PATH_KEYS = frozenset(
    {
        "path",
        "prediction_files",
        "prompt_file",
        "preprocess",
        "postprocess",
        "evaluate",
        "module",
        "metrics_config",
        "tokenizer",
    }
)


#: vLLM engine settings a team token may give without `allow_code`: tuning only (others load code or files:
#: trust_remote_code, worker classes, plugins, tokenizer paths).
ENGINE_KWARGS_ALLOWED = frozenset(
    {
        "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "enforce_eager", "enable_prefix_caching",
        "enable_chunked_prefill", "block_size", "swap_space", "kv_cache_dtype", "seed", "max_seq_len_to_capture",
    }
)  # fmt: skip


class PolicyError(SpecError):
    """The task asks for something a team token may not do through the server (nothing was read or run)."""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        yield from _strings(value["path"] if "path" in value else list(value.values()))


def named_files(data: Any) -> Iterator[str]:
    """Every file a task's data names (values under PATH_KEYS, mounts, a weights file), `output` aside."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in PATH_KEYS or key == "mounts" or (key == "weights" and isinstance(value, str)):
                yield from _strings(value)
            elif key != "output":
                yield from named_files(value)
    elif isinstance(data, list):
        for value in data:
            yield from named_files(value)


def _normal(location: str) -> str:
    """A location for prefix comparison: URIs as written (less a trailing '/'), local paths resolved."""
    if "://" in location:
        return location.rstrip("/")
    return os.path.realpath(location)


def _under(location: str, root: str) -> bool:
    location, root = _normal(location), _normal(root)
    return location == root or location.startswith(root.rstrip("/") + "/")


def _roots(config: ServerConfig, caller: Caller) -> list[str]:
    roots = []
    for root in config.data_roots:
        roots += [root.replace("{tag}", t) for t in caller.tags] if "{tag}" in root else [root]
    return roots


def check_paths(files: list[str], caller: Caller, config: ServerConfig, *, field: str | None = None) -> None:
    """Each file is absolute (or a URI) and under a data root of the caller, and not in the results location.

    Raises:
        PolicyError: naming the first file that is not (and the roots it may use).
    """
    roots = _roots(config, caller)
    for location in files:
        if "://" not in location and not os.path.isabs(location):
            raise PolicyError(
                f"'{location}': give files as absolute paths or URIs on the cluster (the server has no folder of "
                "yours to resolve a relative path against)",
                field=field,
            )
        for kept in config.protected_locations():
            if _under(location, kept) or _under(kept, location):
                raise PolicyError(f"'{location}' holds rayeval's own files (results, tasks or tokens)", field=field)
        if not any(_under(location, root) for root in roots):
            allowed = ", ".join(roots) if roots else "none (this server lets team tokens name no files: built-in sets "
            "and models by URL only; an administrator gives --data-root)"
            raise PolicyError(f"'{location}' is not under a data root this token may read: {allowed}", field=field)


def prepare_data(data: Any, caller: Caller, config: ServerConfig) -> dict[str, Any]:
    """A submitted task's raw data made ready to parse: the results location filled in when missing; for a
    team token, its tags set and every rule that can be checked before parsing checked.

    Raises:
        PolicyError / SpecError: a rule broken, or not a mapping.
    """
    if not isinstance(data, dict):
        raise SpecError("a task file must hold a mapping (key: value) at the top level", source="the request body")
    data = dict(data)
    data.setdefault("output", config.results_location())
    if caller.admin:
        return data
    data["tags"] = list(caller.tags)
    output = data["output"]
    if not isinstance(output, str) or not _under(output, config.results_location()):
        raise PolicyError(
            f"results of tasks submitted with a team token go under {config.results_location()} (leave `output` out)",
            field="output",
        )
    check_paths(list(named_files(data)), caller, config)
    return data


def check_spec(spec: TaskSpec, caller: Caller, config: ServerConfig) -> TaskSpec:
    """The rules a parsed task must meet for `caller` (see the module's docstring); returns the task.

    Raises:
        PolicyError: a rule broken.
    """
    if caller.admin:
        return spec
    if sorted(spec.tags) != sorted(caller.tags):  # prepare_data set them; a copy's overrides may not change them
        spec = spec.model_copy(update={"tags": list(caller.tags)})
    check_paths(list(named_files(spec.model_dump(mode="json"))), caller, config)
    for m in [*spec.models, *spec.judges]:
        if m.auth_header_value is not None and env_references(m.auth_header_value.get_secret_value()):
            raise PolicyError(
                f"model '{m.name}': write the credential itself; a ${{env:NAME}} reference would be read from the "
                "cluster's environment, which a team token may not use",
                field="auth_header_value",
            )
    if not config.allow_code:
        for m in [*spec.models, *spec.judges]:
            unsafe = sorted(set(m.engine.engine_kwargs) - ENGINE_KWARGS_ALLOWED)
            if unsafe:
                raise PolicyError(
                    f"model '{m.name}': engine_kwargs {', '.join(unsafe)} may load code or files on the cluster; this "
                    f"server takes only {', '.join(sorted(ENGINE_KWARGS_ALLOWED))}",
                    field="engine_kwargs",
                )
        if spec.mode == "custom":
            raise PolicyError("mode custom runs your programs on the cluster; this server does not", field="mode")
        for s in spec.evaluation_sets:
            for metric in s.metrics:
                if metric.preprocess or metric.postprocess or metric.name == "evaluate":
                    raise PolicyError(
                        f"set '{s.name}', metric '{metric.name}': scripts and evaluate modules run your code on the "
                        "cluster; this server does not (an administrator may start it with --allow-code)",
                        field="metrics",
                    )
    return spec

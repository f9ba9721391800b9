"""Job entry point for questions to a cluster's coordinator asked from where only its dashboard is
reachable (a laptop): `python -m rayeval.jobs.query list|get TASK|stop TASK|ui [--tags T] [--wait S]`.

`rayeval status`, `list`, `stop` and `ui` with a dashboard address submit it through the Jobs API
(rayeval.cluster.remote); it connects with a bare `ray.init()` (the job's cluster) and prints one
line `RAYEVAL-RESULT <json>`, or `RAYEVAL-ERROR <json>` ({"type", "message"}) for an error rayeval
raised on purpose, which the client raises again.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rayeval.cluster.remote import ERROR_MARK, RESULT_MARK

__all__ = ["main"]


def _answer(args: argparse.Namespace) -> Any:
    import ray

    from rayeval.actors.coordinator import get_coordinator, stop_task
    from rayeval.errors import TaskNotFoundError

    ray.init(logging_level="error", log_to_driver=False)
    tags = args.tags.split(",") if args.tags else None
    if args.op == "ui":
        from rayeval.serve_apps.ui import start_ui

        return start_ui(tags=tags)
    coordinator = get_coordinator(create=False)
    if args.op == "list":
        return ray.get(coordinator.list_tasks.remote(tags)) if coordinator is not None else []
    if args.op == "get":
        record = ray.get(coordinator.get.remote(args.task, tags)) if coordinator is not None else None
    else:
        record = stop_task(args.task, tags=tags, wait=args.wait)
    if record is None:
        raise TaskNotFoundError(f"the cluster's coordinator knows no task '{args.task}' visible to your tags")
    return record


def main(argv: list[str] | None = None) -> int:
    """Answer one question and print it (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m rayeval.jobs.query", description=__doc__.split("\n\n")[0])
    parser.add_argument("op", choices=["list", "get", "stop", "ui"])
    parser.add_argument("task", nargs="?", help="Task id or name (get, stop)")
    parser.add_argument("--tags", help="The caller's tags, comma-separated")
    parser.add_argument("--wait", type=float, default=None, help="stop: seconds to wait for the task to end")
    args = parser.parse_args(argv)
    if args.op in ("get", "stop") and not args.task:
        parser.error(f"{args.op} needs a task id or name")

    from rayeval.errors import RayevalError

    try:
        result = _answer(args)
    except RayevalError as e:
        print(ERROR_MARK + json.dumps({"type": type(e).__name__, "message": str(e)}), flush=True)
        return e.exit_code
    print(RESULT_MARK + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

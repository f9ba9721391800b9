"""Job entry point: `python -m rayeval.jobs.run_task TASK.yaml [--task-id ID]`.

Works under `ray job submit --working-dir . -- python -m rayeval.jobs.run_task TASK.yaml`: it
connects with a bare `ray.init()` (the job's cluster), runs the task, prints progress lines and
the summary. Exit code 2 means the task file or its inputs are invalid (nothing was written).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from rayeval.records import TaskRecord

__all__ = ["main"]


def _printer(every: float = 10.0):
    from rayeval.analysis.text import progress_lines
    from rayeval.records import progress_fraction

    last = [0.0]

    def show(record: TaskRecord) -> None:
        now = time.monotonic()
        if now - last[0] >= every or record["state"] != "running":
            last[0] = now
            print(f"[rayeval] {record['task_id']} {record['state']}: {progress_fraction(record):.1%}", flush=True)
            for line in progress_lines(record):
                print(f"[rayeval]   {line}", flush=True)

    return show


def _load_env(path: str) -> None:
    """Take the submitter's values of the spec's `${env:NAME}` references, and remove the file."""
    import json
    import os

    with open(path, encoding="utf-8") as f:
        os.environ.update(json.load(f))
    try:
        os.remove(path)
    except OSError:
        pass


def _stop_on_sigterm(task_id: str) -> None:
    """`ray job stop` sends the driver SIGTERM (then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S, 3 s by default):
    take the path of `rayeval stop` instead of dying with SystemExit (Ray's own handler), so that the task
    ends `stopped` with what was evaluated kept (and shows `stopped` even if the SIGKILL comes first)."""
    import signal
    import threading

    import ray

    def ask() -> None:
        from rayeval.actors.coordinator import get_coordinator

        deadline = time.monotonic() + 30  # the run may not have registered the task yet
        while time.monotonic() < deadline:
            try:
                coordinator = get_coordinator(create=False)
                if coordinator is not None and ray.get(coordinator.request_stop.remote(task_id)) is not None:
                    return
            except Exception:  # noqa: BLE001 (the coordinator restarting: ask again)
                pass
            time.sleep(0.2)

    def handler(signum: int, frame: object) -> None:
        print(f"[rayeval] {task_id}: stop requested (SIGTERM); what was evaluated is kept", flush=True)
        threading.Thread(target=ask, name="rayeval-sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """Run one task file on the current Ray cluster."""
    parser = argparse.ArgumentParser(prog="python -m rayeval.jobs.run_task", description=__doc__)
    parser.add_argument("task_file", help="Task spec (.yaml/.yml/.json)")
    parser.add_argument("--task-id", help="Task id to use (default: derived from the task name)")
    parser.add_argument("--address", help="Ray cluster address (default: the job's cluster or a local one)")
    parser.add_argument("--submitted", action="store_true", help=argparse.SUPPRESS)  # set by `rayeval submit`
    # set by `rayeval submit`: the ${env:NAME} values of the submitting shell, for this process only
    parser.add_argument("--env-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.env_file:
        _load_env(args.env_file)
    logging.basicConfig(level=logging.INFO, format="[rayeval] %(message)s")
    for noisy in ("httpx", "httpcore", "ray.serve"):  # a line per request, Serve's deployment chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from rayeval.analysis.text import format_summary
    from rayeval.cluster import connect
    from rayeval.errors import RayevalError
    from rayeval.jobs.prepare import prepare
    from rayeval.jobs.runner import run_prepared
    from rayeval.spec import load_task

    try:
        spec = load_task(args.task_file)
        task = prepare(spec, args.task_id)
        print(f"[rayeval] task id: {task.task_id}", flush=True)
        connect(args.address or "auto", log_to_driver=False)  # the job's own cluster; its workers log to Ray
        _stop_on_sigterm(task.task_id)  # after ray.init, which installs a handler that exits
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False  # the job's log: rayeval's lines
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # after ray.data configured its own (at import)
        record = run_prepared(task, on_progress=_printer(), submitted=args.submitted)
    except RayevalError as e:
        print(f"rayeval: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    print(format_summary(record["summary"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

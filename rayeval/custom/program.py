"""One run of a user's evaluation program, on the node Ray picked: the body of a Ray task.

This module imports only the standard library, rayeval.redaction and rayeval.processes (standard
library only too) and Ray, which any Ray worker has: with an image configuration the Ray task runs
inside the user's container, where rayeval is not installed, so these modules are shipped by value
(`ship_by_value`).

The program runs through the shell under a supervisor (rayeval.processes), in a fresh working
directory holding the configuration's shipped mounts (unpacked from the archive sent with the task),
with the platform's variables set; its output goes line by line, credentials scrubbed, into
`program.log` and to the task's event log. At its time limit, when the Ray task is cancelled (a stop),
when the program exits, and when the Ray worker running this task dies, the supervisor ends the
program's whole process tree: children, grandchildren, processes that detached with `setsid` and
processes that ignore SIGTERM.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from typing import Any

from rayeval.processes import stop_supervised, supervised
from rayeval.redaction import scrub

#: EVAL_OUTPUT_DIR inside a container image, as the platform's guide gives it.
IMAGE_OUTPUT_DIR = "/opt/ml/output"

__all__ = ["IMAGE_OUTPUT_DIR", "METRICS_FILE", "run_program", "ship_by_value", "unpack"]

METRICS_FILE = "metrics.json"
#: Bytes of metrics.json read back (a program that writes more is wrong).
_METRICS_LIMIT = 16 * 1024 * 1024
#: Seconds between batches of output lines sent to the event log.
_LOG_EVERY = 0.5
#: Seconds a program's processes have between SIGTERM and SIGKILL.
_GRACE_S = 3.0
#: Seconds between looks at the task's state while a program runs (a stop ends the program from here).
_STOP_POLL_S = 1.0


def _asked_to_stop(events: tuple[Any, str, int | None]) -> bool:
    """Whether the task was asked to stop (or this run lost its lease), as its coordinator says."""
    import ray

    coordinator, task_id, epoch = events
    try:
        state = ray.get(coordinator.report.remote(task_id, [], epoch), timeout=10)
    except Exception:  # the coordinator is restarting: look again next time
        return False
    return state in ("stopping", "stopped", "fenced")


def ship_by_value() -> None:
    """Have cloudpickle send this module's code, and the redaction rule and supervisor it uses, with the
    Ray task (not references to rayeval)."""
    import ray.cloudpickle

    from rayeval import processes, redaction

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(redaction)
    ray.cloudpickle.register_pickle_by_value(processes)


class _Output(threading.Thread):
    """Reads the program's output: every line to program.log, batches of lines to `sink`."""

    def __init__(self, stream: Any, log_path: str, secrets: list[str], sink: Any, prefix: str):
        super().__init__(daemon=True, name="rayeval-program-output")
        self.stream, self.log_path, self.secrets, self.sink, self.prefix = stream, log_path, secrets, sink, prefix
        self.tail: list[str] = []

    def run(self) -> None:
        pending: list[str] = []
        last = time.monotonic()
        with open(self.log_path, "a", encoding="utf-8") as log:
            for raw in iter(self.stream.readline, ""):
                line = scrub(raw.rstrip("\n"), self.secrets)
                log.write(line + "\n")
                log.flush()
                self.tail = (self.tail + [line])[-20:]
                pending.append(line)
                if time.monotonic() - last >= _LOG_EVERY:
                    self._send(pending)
                    pending, last = [], time.monotonic()
            self._send(pending)

    def _send(self, lines: list[str]) -> None:
        if lines and self.sink is not None:
            try:
                self.sink(f"{self.prefix}: " + "\n".join(lines)[-4000:])
            except Exception:  # the log must never break the run
                pass


def _copy_out(local: str, uri: str) -> None:
    """Copy a local folder to a filesystem URI (outputs that are not local folders)."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    fs.create_dir(root, recursive=True)
    pafs.copy_files(local, root, destination_filesystem=fs)


def _pack(folder: str) -> bytes:
    """A folder as a tar archive (its contents at the archive's top)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    return buffer.getvalue()


def unpack(archive: bytes, folder: str) -> None:
    """Unpack what `_pack` made into `folder` (replacing what was there)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def _workdir(mounts: bytes | None) -> str:
    """A fresh working directory, with the mounts' tar archive unpacked in it."""
    workdir = tempfile.mkdtemp(prefix="rayeval-program-")
    if mounts:
        archive = os.path.join(workdir, ".mounts.tar")
        with open(archive, "wb") as f:
            f.write(mounts)
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")  # no absolute paths, no links out of the folder
        os.remove(archive)
    return workdir


def run_program(
    command: str,
    env: dict[str, str],
    secret_env: dict[str, str],
    pair_dir: str,
    timeout: float | None,
    events: tuple[Any, str, int | None] | None = None,
    prefix: str = "program",
    pair_uri: str | None = None,
    mounts: bytes | None = None,
    output_node: str | None = None,
    mask: list[str] | None = None,
    image_output: str | None = None,
) -> dict[str, Any]:
    """Run `command` through the shell with `env` and `secret_env` added to the node's environment.

    Args:
        pair_dir: This configuration x model's folder: EVAL_OUTPUT_DIR is its `output/` (emptied
            first), the program's output lines go to its `program.log` (secret values scrubbed).
            With `pair_uri` (an output that is not a local folder), a scratch folder copied there.
        timeout: Seconds before the program's process group is killed (None: no limit).
        events: (coordinator, task id, run epoch): batches of output lines go to the task's event log.
        mounts: A tar archive of the shipped mounts, unpacked into the program's working directory.
        output_node: The node whose disk holds a local output: run elsewhere, the pair's folder is made in
            a scratch folder and comes back as a tar archive (`archive`), for the caller to unpack.
        mask: Every credential of the task. The program gets only its own (`secret_env`): variables of
            the node's environment holding any other are left out of its environment, and its output
            is masked against all of them.
        image_output: The program runs in a container image (IMAGE_OUTPUT_DIR): EVAL_OUTPUT_DIR is this
            fixed path inside it, emptied first, and what the program writes there comes back with
            `program.log` as the pair's folder (`archive`, or copied to `pair_uri`): the results
            folder on the host is not visible inside the container.

    Returns:
        {"exit_code", "timed_out", "stopped" (the task was asked to stop: the program was ended), "seconds",
        "metrics_text" (None: no metrics.json), "tail" (last lines), "files" (what the program wrote),
        "archive" (the pair's folder, or None)}.
    """
    import ray

    own = {v for v in secret_env.values() if v}
    secrets = list(dict.fromkeys([*own, *(v for v in mask or () if v)]))
    others = [v for v in secrets if v not in own]
    elsewhere = pair_uri is None and output_node is not None and ray.get_runtime_context().get_node_id() != output_node
    elsewhere = elsewhere or (pair_uri is None and image_output is not None)
    if pair_uri is not None or elsewhere:
        pair_dir = tempfile.mkdtemp(prefix="rayeval-custom-")
    output_dir = image_output or os.path.join(pair_dir, "output")
    log_path = os.path.join(pair_dir, "program.log")
    shutil.rmtree(output_dir, ignore_errors=True)
    os.makedirs(output_dir)
    if os.path.exists(log_path):
        os.remove(log_path)
    inherited = {k: v for k, v in os.environ.items() if not any(o in v for o in others)}
    variables = {**inherited, **env, **secret_env, "EVAL_OUTPUT_DIR": output_dir}
    # `python` in the command is the Python of the node's Ray worker (or of the image).
    variables["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), variables.get("PATH", "")])
    sink = None
    if events is not None:
        coordinator, task_id, epoch = events

        def sink(message: str) -> None:
            coordinator.log_event.remote(task_id, "info", message, epoch)

    workdir = _workdir(mounts)
    started = time.monotonic()
    proc = supervised(
        ["/bin/sh", "-c", command],
        grace=_GRACE_S,
        cwd=workdir,
        env=variables,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # apart from the Ray worker's process group and its signals
    )
    reader = _Output(proc.stdout, log_path, secrets, sink, prefix)
    reader.start()
    timed_out = stopped = False
    deadline = None if timeout is None else started + timeout
    next_look = time.monotonic() + _STOP_POLL_S
    try:
        # Short waits, not one long one: Ray's cancellation arrives as an exception raised between Python
        # instructions, which a thread blocked in waitpid would never run. A stop does not rely on it (Ray
        # may not interrupt a running task, and then kills the worker, and soon its children, our
        # supervisor with them): the task's state is looked at here, and the program stopped from here.
        while proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                stop_supervised(proc)
                break
            if events is not None and time.monotonic() >= next_look:
                next_look = time.monotonic() + _STOP_POLL_S
                if _asked_to_stop(events):
                    stopped = True
                    stop_supervised(proc)
                    break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:  # cancelled (a stop) or failed here: the program goes too
            stop_supervised(proc)
        reader.join(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    metrics_path = os.path.join(output_dir, METRICS_FILE)
    metrics_text = None
    if os.path.isfile(metrics_path):
        with open(metrics_path, "rb") as f:
            metrics_text = f.read(_METRICS_LIMIT).decode("utf-8", errors="replace")
    files = sorted(
        os.path.relpath(os.path.join(d, f), output_dir) for d, _, names in os.walk(output_dir) for f in names
    )
    archive = None
    if image_output is not None:  # the pair's folder holds its output/, as it does without an image
        shutil.copytree(output_dir, os.path.join(pair_dir, "output"), dirs_exist_ok=True)
    if pair_uri is not None or elsewhere:
        try:
            if pair_uri is not None:
                _copy_out(pair_dir, pair_uri)
            else:
                archive = _pack(pair_dir)
        finally:
            shutil.rmtree(pair_dir, ignore_errors=True)
    return {
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 3),
        "metrics_text": metrics_text,
        "tail": reader.tail,
        "files": files,
        "archive": archive,
    }

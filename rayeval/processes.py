"""Process trees that end with their owner: a user's program and everything it starts.

A program rayeval runs (a Custom Evaluation program, a sandboxed code sample) may start children that
start children, detach with `setsid`, double-fork into daemons or ignore SIGTERM. Killing its process
group does not reach those, and a Python exception in the Ray worker that started it (a cancelled
task) is not delivered when the worker is killed or stuck. So the program runs under a small
supervisor process (`supervised`), standard library only, which:

- makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): whatever the program detaches is
  re-parented to the supervisor instead of init, so the supervisor always sees the whole tree;
- asks the kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`): a Ray worker that is killed
  (a forced cancel, a lost node, `ray stop`, a cluster shut down) takes the tree with it, at once and
  with SIGKILL (nobody is left to stop gracefully for, and Ray kills a dead worker's children soon
  after, the supervisor included: it must be done by then); the program itself is asked to die with
  the supervisor (SIGKILL), should the supervisor be killed first;
- on SIGTERM/SIGINT, or when the program itself exits, ends every remaining descendant: SIGTERM,
  then SIGKILL after a grace period, until none is left; then it exits with the program's status.

The supervisor is a separate `python -c` process, so it runs inside images without rayeval too (this
module ships by value with the Custom Evaluation program, like rayeval.redaction).
"""

from __future__ import annotations

import ctypes
import inspect
import os
import signal
import subprocess
import sys
import time
from typing import Any

__all__ = ["SUPERVISOR_SOURCE", "descendants", "end_tree", "stop_supervised", "supervised"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def supervised(command: list[str], *, grace: float = 3.0, **popen: Any) -> subprocess.Popen:
    """Start `command` under a supervisor that ends its whole tree when asked, when the command exits,
    or when this process dies; `popen` are subprocess.Popen's arguments (stdin, stdout, cwd, env, ...),
    and the command inherits its stdin, stdout and stderr (give stdin=DEVNULL unless it talks on it).

    The returned Popen is the supervisor's: its exit status is the command's (143 when it was stopped).
    Stop it with `stop_supervised`.
    """
    return subprocess.Popen([sys.executable, "-c", SUPERVISOR_SOURCE, str(grace), *command], **popen)


def stop_supervised(proc: subprocess.Popen, *, wait: float = 10.0) -> None:
    """Ask a supervisor to end its tree (SIGTERM) and wait for it; past `wait` seconds, kill it and what
    it leaves behind (by its descendants and its process group)."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=wait)
        return
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    end_tree(proc.pid, grace=0.0)


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (by parent links in /proc), nearest first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def end_tree(pid: int, *, grace: float = 3.0, include_self: bool = True) -> None:
    """End a process's descendants, and the process itself unless `include_self` is off: SIGTERM, then
    SIGKILL after `grace` seconds (at once when it is 0), until none is left."""
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM if grace > 0 else signal.SIGKILL
    while True:
        left = [p for p in ([pid] if include_self else []) + descendants(pid) if _alive(p)]
        if not left:
            return
        for p in left:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        _reap(pid if include_self else -1)
        if time.monotonic() >= deadline:
            sig = signal.SIGKILL


def _reap(pid: int) -> None:
    """Collect the exit status of our children that ended (`pid`, or any with -1)."""
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done == 0 or pid != -1:
            return


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _supervise(grace: float, command: list[str]) -> int:
    """The supervisor's body: run `command`, end the whole tree when asked, when the command exits or
    when the parent dies; returns the command's exit status (143 when stopped)."""
    parent = os.getppid()
    libc = None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)  # the parent died: see `orphaned`
    except (OSError, AttributeError):  # not Linux: the process group and the stop path remain
        pass
    stopped: list[int] = []
    orphaned: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopped.append(1))

    known: list[int] = []  # the tree as last looked at: killed first, without a look, when the parent dies

    def parent_died(*_: Any) -> None:  # end the tree right here, before Ray kills this process too
        orphaned.append(1)
        stopped.append(1)
        for pid in known:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end_tree(os.getpid(), grace=0.0, include_self=False)

    signal.signal(signal.SIGHUP, parent_died)
    if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG took effect
        return 143

    def die_with_supervisor() -> None:  # in the program's process, before it runs (this one has no threads)
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    # The program gets the supervisor's stdin, stdout and stderr (`supervised`'s popen).
    program = subprocess.Popen(command, preexec_fn=die_with_supervisor)
    status = None
    looked = 0.0
    while status is None and not stopped:
        if time.monotonic() - looked >= 0.5:
            known[:] = [program.pid, *descendants(os.getpid())]
            looked = time.monotonic()
        # Polled, not blocking: a blocked waitpid is resumed after a signal (PEP 475), never seeing a stop.
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)  # the program, or an orphan of its tree re-parented here
        except ChildProcessError:
            break
        if pid == program.pid:
            status = os.waitstatus_to_exitcode(code)
        elif pid == 0:
            time.sleep(0.05)
    end_tree(os.getpid(), grace=0.0 if orphaned else grace, include_self=False)
    if status is None:
        return 143
    return 128 - status if status < 0 else status


def _main() -> None:
    sys.exit(_supervise(float(sys.argv[1]), sys.argv[2:]))


if __name__ == "__main__":  # run as the supervisor (`python -c SUPERVISOR_SOURCE grace command...`)
    _main()

#: The supervisor's program, run by `python -c`: this module's own source. Computed here, where rayeval is
#: installed; it travels as a value with the functions that use it (into images without rayeval).
SUPERVISOR_SOURCE = "" if __name__ == "__main__" else inspect.getsource(sys.modules[__name__])

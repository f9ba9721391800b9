"""The supervisor of user programs ends the whole process tree: children, a setsid grandchild, a
double-forked daemon and processes that ignore SIGTERM, when stopped, when the program exits, and when
the process that started it is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rayeval.processes import descendants, stop_supervised, supervised

REPO = Path(__file__).resolve().parents[1]
HOSTILE = f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.support.eval_program import hostile_tree; "


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


#: A program that starts the hostile tree, prints its pids and waits.
PROGRAM = HOSTILE + "print(*hostile_tree(), flush=True); import time; time.sleep(3600)"


def _hostile(**popen) -> tuple[subprocess.Popen, list[int]]:
    """The hostile program, supervised."""
    proc = supervised([sys.executable, "-c", PROGRAM], grace=1.0, stdout=subprocess.PIPE, text=True, **popen)
    tree = [int(x) for x in proc.stdout.readline().split()]
    assert len(tree) >= 5 and all(_alive(p) for p in tree)
    return proc, tree


def test_a_stop_ends_every_process_of_the_tree():
    proc, tree = _hostile()
    everything = [proc.pid, *descendants(proc.pid)]
    assert set(tree) <= set(everything)  # the setsid and double-forked ones are under the supervisor
    started = time.monotonic()
    stop_supervised(proc)
    assert proc.returncode == 143
    assert time.monotonic() - started < 5  # SIGTERM ignored: SIGKILL after the 1 s grace
    assert _gone_within(everything, 2) == []


def test_the_tree_dies_with_the_process_that_started_it():
    starter = (
        f"import subprocess, sys, time; sys.path.insert(0, {str(REPO)!r}); "
        "from rayeval.processes import supervised; "
        f"p = supervised([sys.executable, '-c', {PROGRAM!r}], grace=1.0); "
        "time.sleep(3600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter])
    deadline = time.monotonic() + 20
    while len(descendants(parent.pid)) < 7:  # supervisor, program, and the hostile tree
        assert time.monotonic() < deadline
        time.sleep(0.1)
    everything = descendants(parent.pid)
    os.kill(parent.pid, signal.SIGKILL)  # no Python left to clean up: the kernel tells the supervisor
    parent.wait()
    assert _gone_within(everything, 10) == []


def test_the_tree_dies_even_when_the_supervisor_is_killed_right_after_its_parent():
    """What Ray does to a killed worker's children: the supervisor is SIGKILLed shortly after the worker.
    It ends the tree as soon as the kernel tells it that its parent died, before that."""
    starter = (
        f"import subprocess, sys, time; sys.path.insert(0, {str(REPO)!r}); "
        "from rayeval.processes import supervised; "
        f"p = supervised([sys.executable, '-c', {PROGRAM!r}], grace=1.0); "
        "print(p.pid, flush=True); time.sleep(3600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    supervisor = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while len(descendants(parent.pid)) < 7:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    everything = descendants(parent.pid)
    os.kill(parent.pid, signal.SIGKILL)
    time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(supervisor, signal.SIGKILL)
    parent.wait()
    assert _gone_within(everything, 5) == []


def test_what_a_program_leaves_behind_ends_with_it():
    proc = supervised(
        ["/bin/sh", "-c", "setsid sh -c 'sleep 3605' & (setsid sh -c 'sleep 3606 &' &); echo $!; exit 7"],
        grace=1.0,
        stdout=subprocess.PIPE,
        text=True,
    )
    daemon = int(proc.stdout.readline())
    assert proc.wait(timeout=10) == 7  # the program's own status
    assert _gone_within([daemon], 5) == []
    out = subprocess.run(["pgrep", "-f", "sleep 360[56]$"], capture_output=True, text=True).stdout
    assert out == ""

"""What a running task shows: deployment steps on one line each, Serve's slow-start note said plainly."""

from __future__ import annotations

import io

from rayeval.cli.progress import deployment_step, progress_printer

SLOW = (
    "Deployment 'LLMServer:smollm2' in application 'rayeval-smollm2-1' has 1 replicas that have taken more "
    "than 30s to initialize.\nThis may be caused by a slow __init__ or reconfigure method."
)


def test_a_deployment_step_is_one_line_and_says_what_a_slow_replica_does():
    assert deployment_step(SLOW) == "1 replica(s) still starting after 30 s (vLLM loads the model and warms up)"
    assert deployment_step("healthy after 40 s") == "healthy after 40 s"
    assert deployment_step("first line\nsecond line") == "first line"
    assert deployment_step("") == ""


def test_each_deployment_step_is_printed_once_then_the_bar():
    stream = io.StringIO()
    show = progress_printer(quiet=False, stream=stream)
    record = {"state": "running", "progress": {"m": {"s": {"total": 10, "done": 0, "errors": 0}}}, "deployments": {}}
    for message in ("deploying m from /models/m", SLOW, SLOW, "healthy after 41 s"):
        state = "running" if message.startswith("healthy") else "deploying"
        show({**record, "deployments": {"m": {"state": state, "message": message}}})
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("model ")]
    assert lines == [
        "model m: deploying: deploying m from /models/m",
        "model m: deploying: 1 replica(s) still starting after 30 s (vLLM loads the model and warms up)",
        "model m: running: healthy after 41 s",
    ]


_DRIVE = r"""
import sys, time
from rayeval.cli.progress import progress_printer

show = progress_printer(quiet=False)  # on stderr: the pseudo-terminal
long = "a-model-with-a-rather-long-name-for-its-bar"
sets = {"gsm8k": 200, "humaneval-with-a-long-set-name": 164}
for step, state in enumerate(["running"] * 6 + ["succeeded"]):
    progress = {long: {s: {"total": n, "done": min(n, step * 40), "errors": step, "reused": 0}
                       for s, n in sets.items()}}
    deployments = {long: {"state": "running", "message": "healthy after 41 s"}}
    show({"state": state, "started_at": time.time() - 10 - step, "progress": progress, "deployments": deployments})
    time.sleep(0.3)
show.close()
print("END", file=sys.stderr)
"""


def test_on_an_80_column_terminal_each_model_and_set_has_a_bar_that_fits():
    import fcntl
    import os
    import pty
    import re
    import struct
    import subprocess
    import sys
    import termios

    from tests.conftest import REPO

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _DRIVE], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    assert raw.rstrip().endswith("END")
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    segments = [s for s in re.split(r"[\r\n]", visible) if s.strip()]
    assert max(len(s) for s in segments) <= 80, max(segments, key=len)  # nothing scrolls or wraps
    assert sum("healthy after 41 s" in s for s in segments) == 1  # a deployment step once
    final = segments[-3:-1]  # the live view's last state, left on the terminal: one bar per set
    assert final[0].startswith("a-model-with-a-rath… / gsm8k ") and "100% 200/200" in final[0]
    assert final[1].startswith("a-model-wi… / humaneval-wit… ") and "100% 164/164" in final[1]
    cursor = re.findall(r"\x1b\[\?25([hl])", raw)
    assert cursor and cursor[-1] == "h"  # the cursor is shown again

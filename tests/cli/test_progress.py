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

"""Custom Evaluation mode on a real local Ray cluster: the user's program (tests/support/eval_program.py,
shipped as a mount) calls the project's OpenAI-compatible test server with the credential rayeval
hands it, and rayeval reads its metrics.json."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import signal
import tarfile
import time
from pathlib import Path

import pytest

import rayeval
from rayeval.custom.outcome import parse_metrics
from rayeval.custom.packing import pack_mounts, runtime_env
from rayeval.errors import SpecError
from rayeval.spec import CustomConfigSpec, parse_task
from tests.conftest import REPO

PROGRAM = Path(__file__).resolve().parents[1] / "support" / "eval_program.py"
SECRET = "Bearer sk-custom-secret-98765"
SECRET_VAR = "RAYEVAL_TEST_CUSTOM_KEY"


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv(SECRET_VAR, SECRET)


def _models(server, names=("m-a", "m-b")):
    return [{"name": n, "url": server.url, "model": n, "auth_header_value": f"${{env:{SECRET_VAR}}}"} for n in names]


def _config(name, sets, *args, **extra):
    return {
        "name": name,
        "evaluation_sets": sets,
        "mounts": [str(PROGRAM)],
        "command": f"python eval_program.py {' '.join(args)}".strip(),
        **extra,
    }


def _files_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def _record(task_id: str) -> dict:
    import ray

    from rayeval.actors.coordinator import get_coordinator

    return ray.get(get_coordinator().get.remote(task_id))


def test_programs_run_on_each_model_with_the_platform_variables(ray_cluster, stub_server, tmp_path, secret_env):
    server = stub_server(api_key=SECRET.split()[1], models=("m-a", "m-b"))
    notes = tmp_path / "notes.txt"
    notes.write_text("placed where the program looks for it\n")
    qa_mounts = [str(PROGRAM), {"path": str(notes), "target": "data/notes.txt"}]
    task = {
        "name": "custom-two-by-two",
        "mode": "custom",
        "tags": ["custom-qa", "nightly"],
        "output": str(tmp_path / "out"),
        "models": _models(server),
        # `direct`: the programs call the model themselves with its credential (the gateway's own test is
        # tests/custom/test_gateway.py).
        "custom": [
            _config("qa", ["qa"], parameters={"items": 2}, env={"GREETING": "hello"}, mounts=qa_mounts, direct=True),
            _config("math", ["math", "arith"], "--items 3", direct=True),
        ],
    }
    handle = rayeval.run(task)
    record = _record(handle.task_id)
    assert record["state"] == "succeeded"
    rows = {(r["model"], r["eval_set"], r["metric"]): r for r in handle.results()}
    for model in ("m-a", "m-b"):
        for cfg, n in (("qa", 2), ("math", 3)):
            questions = [f"Question {i}: what is {i} + {i}?" for i in range(n)]
            # the stub answers "The answer is N." with N the prompt's length
            expected = sum(len(f"The answer is {len(q)}.") for q in questions) / n
            assert rows[(model, cfg, "answered")]["value"] == 1.0
            assert rows[(model, cfg, "mean_chars")]["value"] == pytest.approx(expected)
    assert server.total_requests == 2 * (2 + 3)
    # In the results with the other modes' metrics: mean_chars is not on [0, 1] until given a range.
    board = rayeval.results(handle.task_id)
    assert board.excluded == ["math/mean_chars", "qa/mean_chars"]
    assert all(s.score == 1.0 and s.components == 2 for s in board.leaderboard)  # `answered` only
    ranged = rayeval.results(handle.task_id, weights={"ranges": {"mean_chars": [0, 40]}})
    chars = {cfg: rows[("m-a", cfg, "mean_chars")]["value"] for cfg in ("qa", "math")}
    expected = (1 + 1 + chars["qa"] / 40 + chars["math"] / 40) / 4
    assert [s.score for s in ranged.leaderboard] == pytest.approx([expected, expected])
    assert all(s.ci_low is None for s in ranged.leaderboard) and not ranged.excluded  # no items to resample
    assert all(h.get("authorization") == SECRET for h in server.headers_seen)

    pair = tmp_path / "out" / handle.task_id / "custom" / "qa" / "m-b"
    seen = json.loads((pair / "output" / "env.json").read_text())
    assert seen["EVAL_INFERENCE_URL"] == f"{server.url.rstrip('/')}/chat/completions"
    assert seen["EVAL_MODEL_NAME"] == "m-b" and seen["EVAL_AUTHORIZATION_HEADER_KEY"] == "Authorization"
    assert seen["auth_sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert seen["GREETING"] == "hello" and seen["argv"] == ["--items", "2"]
    assert seen["EVAL_EVALUATION_SETS"] == "qa" and "eval_program.py" in seen["cwd_files"]
    assert seen["EVAL_TAGS"] == "custom-qa,nightly"  # the task's tags reach the configuration
    assert json.loads(seen["EVAL_MOUNTS"]) == {"eval_program.py": "eval_program.py", "notes.txt": "data/notes.txt"}
    assert "data" in seen["cwd_files"] and "notes.txt" not in seen["cwd_files"]  # at its target
    assert (pair / "output" / "answers.jsonl").exists()  # the program's other files are kept
    outcome = json.loads((pair / "outcome.json").read_text())
    assert sorted(outcome["files"]) == ["answers.jsonl", "env.json", "metrics.json"]

    # Progress: (models x sets) done; the program's output reached the task's log, scrubbed.
    assert record["progress"]["m-a"] == {
        "qa": {"done": 1, "errors": 0, "reused": 0, "total": 1},
        "math": {"done": 1, "errors": 0, "reused": 0, "total": 1},
        "arith": {"done": 1, "errors": 0, "reused": 0, "total": 1},
    }
    events = "\n".join(e["message"] for e in record["events"])
    assert "starting math on m-b" in events and "the credential is ***" in events
    assert "the credential is ***" in (pair / "program.log").read_text()
    token = SECRET.split()[1]
    for text in (events, _files_text(tmp_path / "out"), json.dumps(record)):
        assert token not in text


def test_a_failing_program_fails_only_its_pair(ray_cluster, stub_server, tmp_path, secret_env):
    server = stub_server(api_key=SECRET.split()[1], models=("m-a",))
    behaviours = ["exit", "nometrics", "malformed", "wrongshape", "nonnumeric"]
    task = {
        "name": "custom-failures",
        "mode": "custom",
        "output": str(tmp_path / "out"),
        "models": _models(server, ["m-a"]),
        "custom": [_config(b, [b], f"--behave {b} --items 1") for b in behaviours]
        + [_config("hang", ["hang"], "--behave hang", timeout_s=4), _config("fine", ["fine"], "--items 1")],
    }
    started = time.monotonic()
    handle = rayeval.run(task)
    assert time.monotonic() - started < 120
    results = handle.results()
    rows = {r["eval_set"]: r for r in results if r["metric"] in ("(no metrics)", "answered")}
    errors = {name: rows[name].get("error", "") for name in [*behaviours, "hang"]}
    assert errors["exit"].startswith("the program exited with status 3") and "something went wrong" in errors["exit"]
    assert errors["nometrics"].startswith("the program wrote no $EVAL_OUTPUT_DIR/metrics.json")
    assert errors["malformed"].startswith("metrics.json is not valid JSON")
    assert "metrics: Field required" in errors["wrongshape"]
    assert "metrics.0.value: Value error, must be a finite number" in errors["nonnumeric"]
    assert errors["hang"].startswith("the program ran past its timeout of 4 s and was killed")
    assert all(rows[n]["value"] is None and rows[n]["errors"] == 1 for n in errors)
    assert rows["fine"]["value"] == 1.0 and _record(handle.task_id)["state"] == "succeeded"
    progress = _record(handle.task_id)["progress"]["m-a"]
    assert progress["fine"] == {"done": 1, "errors": 0, "reused": 0, "total": 1}
    assert progress["exit"] == {"done": 1, "errors": 1, "reused": 0, "total": 1}


def test_restart_runs_only_the_failed_pair_and_reuse_takes_earlier_metrics(
    ray_cluster, stub_server, tmp_path, secret_env
):
    server = stub_server(api_key=SECRET.split()[1], models=("m-a", "m-b"))
    flag = tmp_path / "recovered"
    task = {
        "name": "custom-restart",
        "mode": "custom",
        "output": str(tmp_path / "out"),
        "models": _models(server),
        "custom": [_config("qa", ["qa"], "--items 2 --fail-model m-b", env={"RECOVERED_FLAG": str(flag)})],
    }
    first = rayeval.run(task)
    rows = {r["model"]: r for r in first.results() if r["metric"] in ("(no metrics)", "answered")}
    assert rows["m-a"]["value"] == 1.0 and rows["m-b"]["value"] is None
    assert server.total_requests == 2
    a_outcome = tmp_path / "out" / first.task_id / "custom" / "qa" / "m-a" / "outcome.json"
    before = a_outcome.read_text()

    flag.touch()
    record = rayeval.restart(first.task_id)
    assert record["state"] == "succeeded" and server.total_requests == 4  # only m-b ran
    assert a_outcome.read_text() == before
    assert {r["model"]: r["value"] for r in first.results() if r["metric"] == "answered"} == {"m-a": 1.0, "m-b": 1.0}
    assert record["progress"]["m-b"]["qa"]["done"] == 1 and record["progress"]["m-b"]["qa"]["errors"] == 0

    again = rayeval.run({**task, "name": "custom-restart-2", "reuse": True})
    assert server.total_requests == 4  # both pairs reused
    reused = [r for r in again.results() if r["metric"] == "answered"]
    assert {r["reused_from"] for r in reused} == {first.task_id} and all(r["value"] == 1.0 for r in reused)

    # Copy with an override (by name): another configuration, so it runs again.
    copied = rayeval.copy_spec(first.task_id, name="custom-restart-3", overrides={"custom.qa.parameters": {"items": 1}})
    assert copied.custom[0].command == task["custom"][0]["command"] and copied.mode == "custom"
    third = rayeval.run(copied)
    assert server.total_requests == 6
    assert all("reused_from" not in r for r in third.results())

    rayeval.delete(first.task_id)
    assert not (tmp_path / "out" / first.task_id).exists()


def _hostile_tree(log: Path, seconds: float = 60) -> list[int]:
    """The pids of a hostile program (eval_program.py --behave hostile) and its whole tree, once running."""
    deadline = time.monotonic() + seconds
    while not (log.exists() and "thinking forever" in log.read_text()):
        assert time.monotonic() < deadline, "the program did not start"
        time.sleep(0.2)
    m = re.search(r"pid (\d+), tree ([\d ]+)\)", log.read_text())
    pids = [int(m.group(1)), *map(int, m.group(2).split())]
    assert len(pids) >= 6 and all(_alive(p) for p in pids)
    return pids


def _all_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _start_hostile(server, tmp_path, name: str, then: str) -> tuple[rayeval.TaskHandle, list[int]]:
    """A custom task whose first program starts a hostile tree (children, a setsid grandchild, a
    double-forked daemon, SIGTERM ignored) and hangs, and whose second configuration is `then`; returns the
    task's handle and the tree's pids once it runs."""
    task = {
        "name": name,
        "mode": "custom",
        "output": str(tmp_path / "out"),
        "models": _models(server, ["m-a"]),
        "custom": [_config("hang", ["hang"], "--behave hostile"), _config(then, [then], "--items 1")],
    }
    handle = rayeval.run(task, wait=False)
    return handle, _hostile_tree(tmp_path / "out" / handle.task_id / "custom" / "hang" / "m-a" / "program.log")


def test_stop_kills_the_running_program(ray_cluster, stub_server, tmp_path, secret_env):
    server = stub_server(api_key=SECRET.split()[1], models=("m-a",))
    handle, tree = _start_hostile(server, tmp_path, "custom-stop", then="never")
    record = rayeval.stop(handle.task_id, wait=60)
    assert record["state"] == "stopped"
    rows = {r["eval_set"]: r for r in handle.results()}
    assert rows["hang"]["error"].startswith("stopped on request") and "never" not in rows
    assert rows["hang"]["metric"] == "(no metrics)"
    assert server.total_requests == 0
    assert _all_gone(tree) == [], "part of the program outlived the stop"


def _ray_worker_of(pid: int) -> int:
    """The Ray worker process a program runs under (its nearest `ray::` ancestor)."""
    while pid > 1:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        if cmdline.startswith("ray::"):
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError("the program does not run under a Ray worker")


def test_a_killed_ray_worker_takes_the_program_with_it(ray_cluster, stub_server, tmp_path, secret_env):
    server = stub_server(api_key=SECRET.split()[1], models=("m-a",))
    handle, tree = _start_hostile(server, tmp_path, "custom-worker-killed", then="after")
    os.kill(_ray_worker_of(tree[0]), signal.SIGKILL)  # no exception reaches the task: the kernel tells
    assert _all_gone(tree) == [], "part of the program outlived its Ray worker"
    record = handle.wait(timeout=120)
    rows = {r["eval_set"]: r for r in handle.results()}
    assert record["state"] == "succeeded"  # the pair failed alone; the next one ran
    assert rows["hang"]["metric"] == "(no metrics)" and rows["hang"]["error"]
    assert rows["after"]["metric"] in ("answered", "mean_chars")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_image_configurations_map_to_ray_runtime_env(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "data.txt").write_text("x")
    cfg = CustomConfigSpec.model_validate(
        {
            "name": "bfcl",
            "evaluation_sets": ["bfcl_simple"],
            "image": "registry.example.com/evaluators/bfcl",
            "image_version": "2026.3",
            "mounts": [str(folder), {"path": "/mnt/shared/weights", "shared": True}],
            "command": "python /app/run.py",
        }
    )
    assert runtime_env(cfg) == {"image_uri": "registry.example.com/evaluators/bfcl:2026.3"}
    with tarfile.open(fileobj=io.BytesIO(pack_mounts(cfg, tmp_path))) as tar:
        assert tar.getnames() == ["bench", "bench/data.txt"]  # the shared mount is not shipped
    image_only = CustomConfigSpec.model_validate(
        {"name": "x", "evaluation_sets": ["s"], "image": "evaluator", "command": "run"}
    )
    assert runtime_env(image_only) == {"image_uri": "evaluator"} and pack_mounts(image_only, tmp_path) is None
    plain = CustomConfigSpec.model_validate({"name": "x", "evaluation_sets": ["s"], "command": "run"})
    assert runtime_env(plain) == {}

    base = {"name": "t", "mode": "custom", "models": [{"name": "m", "url": "http://127.0.0.1:9/v1"}]}
    bad = {
        "needs `image`": {"name": "c", "evaluation_sets": ["s"], "image_version": "1", "command": "x"},
        "EVAL_* variables are set by rayeval": {
            "name": "c", "evaluation_sets": ["s"], "command": "x", "env": {"EVAL_OUTPUT_DIR": "/tmp"}
        },
        "does not exist here": {"name": "c", "evaluation_sets": ["s"], "command": "x", "mounts": ["/no/such/dir"]},
    }  # fmt: skip
    for message, config in bad.items():
        with pytest.raises(SpecError, match=re.escape(message)):
            parse_task({**base, "custom": [config]})
    with pytest.raises(SpecError, match="mode custom needs `custom`"):
        parse_task(base)
    with pytest.raises(SpecError, match="leave the task's `evaluation_sets` and `judges` out"):
        parse_task({**base, "custom": [bad["needs `image`"] | {"image": "i"}], "evaluation_sets": [
            {"name": "s", "path": str(folder), "metrics": ["exact_match"]}]})  # fmt: skip
    with pytest.raises(SpecError, match="`custom` configurations belong to mode custom"):
        sets = [{"name": "s", "path": str(folder), "metrics": ["exact_match"]}]
        parse_task(
            {**base, "mode": "inference_and_evaluation", "evaluation_sets": sets, "custom": [plain.model_dump()]}
        )


def test_metrics_files_are_checked():
    assert parse_metrics('{"metrics": [{"name": "acc", "value": 0.5}, {"name": "n", "value": 3}]}') == [
        {"name": "acc", "value": 0.5},
        {"name": "n", "value": 3.0},
    ]
    for text, message in [
        ("{", "not valid JSON"),
        ('{"metrics": []}', "metrics: List should have at least 1 item"),
        ('{"metrics": [{"name": "a", "value": true}]}', "must be a finite number"),
        ('{"metrics": [{"name": "a", "value": NaN}]}', "must be a finite number"),
        ('{"metrics": [{"value": 1}]}', "metrics.0.name: Field required"),
        ('{"metrics": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}', "names a metric twice: a"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_metrics(text)


def test_a_checkpoint_rayeval_hosts_is_reachable_by_the_program(ray_cluster, tmp_path):
    from ray import serve

    from rayeval.serve_apps.tiny_model import tiny_model_dir

    checkpoint = tiny_model_dir()
    task = {
        "name": "custom-hosted",
        "mode": "custom",
        "output": str(tmp_path / "out"),
        "models": [{"name": "tiny", "path": str(checkpoint), "engine": {"MAX_MODEL_LEN": 512}}],
        "custom": [_config("qa", ["qa"], "--items 2")],
    }
    handle = rayeval.run(task)
    rows = {r["metric"]: r for r in handle.results()}
    assert rows["answered"]["errors"] == 0 and rows["answered"]["value"] is not None, rows
    seen = json.loads(
        (tmp_path / "out" / handle.task_id / "custom" / "qa" / "tiny" / "output" / "env.json").read_text()
    )
    assert seen["EVAL_INFERENCE_URL"].startswith("http://127.0.0.1:") and seen["EVAL_INFERENCE_URL"].endswith(
        "/v1/chat/completions"
    )
    assert seen["auth_sha256"] == hashlib.sha256(b"").hexdigest()  # a hosted model needs no credential
    assert not [a for a in serve.status().applications if checkpoint.name in a]  # taken down at the end


def test_the_bfcl_example_program(ray_cluster, stub_server, tmp_path):
    """examples/custom/bfcl_simple.yaml against a stub function-calling model that answers the even
    questions right (BFCL's possible answers) and the odd ones in prose."""
    from rayeval.spec import load_task
    from tests.metrics.test_bfcl import perfect_calls, render

    data = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0]) / "data"

    def lines(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text().splitlines() if x]

    questions = lines(data / "BFCL_v4_simple_python.json")
    answers = {r["id"]: r["ground_truth"] for r in lines(data / "possible_answer" / "BFCL_v4_simple_python.json")}
    planned = {}
    for i, q in enumerate(questions[:20]):
        right = render(perfect_calls(answers[q["id"]], q["function"]))
        planned[q["question"][0][0]["content"]] = right if i % 2 == 0 else "I cannot call any function for this."

    def model(body: dict) -> str:
        assert body["messages"][0]["role"] == "system" and "[func_name1(" in body["messages"][0]["content"]
        return planned[body["messages"][1]["content"]]

    server = stub_server(responder=model)
    spec = load_task(REPO / "examples" / "custom" / "bfcl_simple.yaml").model_dump(mode="json", exclude_none=True)
    spec["output"] = str(tmp_path / "out")
    spec["models"] = [{"name": "stub", "url": server.url, "model": "stub-model"}]
    spec["custom"][0]["parameters"]["limit"] = 20
    rows = {r["metric"]: r["value"] for r in rayeval.run(spec).results()}
    assert rows == {"bfcl_simple_ast_accuracy": 0.5, "request_errors": 0.0}
    assert server.total_requests == 20


def test_a_program_no_node_can_run_fails_in_time_saying_what_it_needs(ray_cluster, stub_server, tmp_path, secret_env):
    server = stub_server(api_key=SECRET.split()[1], models=("m-a",))
    task = {
        "name": "custom-no-gpu",
        "mode": "custom",
        "output": str(tmp_path / "out"),
        "models": _models(server, ["m-a"]),
        "resources": {"wait_timeout_s": 4},
        "custom": [
            _config("gpu", ["gpu"], "--items 1", resources={"num_gpus": 1}),  # this cluster has no GPU
            _config("cpu", ["cpu"], "--items 1"),
        ],
    }
    record = rayeval.run(task).status()
    assert record["state"] == "succeeded"  # the pair failed alone
    rows = {r["eval_set"]: r for r in record["summary"]}
    assert "no node has it" in rows["gpu"]["error"] and "GPU 1" in rows["gpu"]["error"]
    assert "(resources.wait_timeout_s)" in rows["gpu"]["error"] and "the cluster has 1 node" in rows["gpu"]["error"]
    assert rows["cpu"]["metric"] in ("answered", "mean_chars")


def test_a_program_gets_only_its_own_credential_and_prints_none(tmp_path, monkeypatch):
    from rayeval.custom.program import run_program

    own, other = "Bearer sk-own-444555666", "Bearer sk-other-111222333"
    monkeypatch.setenv("OTHER_MODEL_KEY", other)  # another model's key, in the worker's environment
    result = run_program(
        "env; echo own=$EVAL_AUTHORIZATION_HEADER_VALUE; echo typed=sk-other-111222333",
        {"EVAL_CONFIG_NAME": "c"},
        {"EVAL_AUTHORIZATION_HEADER_VALUE": own},
        str(tmp_path),
        30,
        mask=[own, other],
    )
    assert result["exit_code"] == 0
    log = (tmp_path / "program.log").read_text()
    assert "OTHER_MODEL_KEY" not in log  # left out of its environment
    assert "own=***" in log and "typed=***" in log  # and masked in everything it prints
    assert "sk-own" not in log and "sk-other" not in log and "sk-other" not in "\n".join(result["tail"])


def test_in_an_image_the_output_folder_is_the_guides_and_comes_back_as_the_pairs_folder(tmp_path):
    """A configuration with an image runs its program inside the container, where the host's results folder
    is not: EVAL_OUTPUT_DIR is /opt/ml/output there (the platform's path), and what the program writes there
    comes back with its program.log as the pair's folder. Without a container engine here, the program runs
    in this process with the image's output path moved to a scratch folder (the same code path)."""
    from rayeval.custom.program import IMAGE_OUTPUT_DIR, run_program, unpack
    from rayeval.custom.runner import image_output

    with_image = CustomConfigSpec.model_validate({"name": "x", "evaluation_sets": ["s"], "image": "ev", "command": "c"})
    plain = CustomConfigSpec.model_validate({"name": "x", "evaluation_sets": ["s"], "command": "c"})
    assert image_output(with_image) == IMAGE_OUTPUT_DIR == "/opt/ml/output" and image_output(plain) is None

    inside = tmp_path / "container" / "opt" / "ml" / "output"
    (inside.parent).mkdir(parents=True)
    (inside).mkdir()
    (inside / "stale.txt").write_text("from an earlier run in the same container")  # emptied first
    command = (
        'echo "writing to $EVAL_OUTPUT_DIR"; echo \'{"metrics": [{"name": "acc", "value": 0.5}]}\' > '
        '"$EVAL_OUTPUT_DIR/metrics.json"; mkdir -p "$EVAL_OUTPUT_DIR/art"; echo x > "$EVAL_OUTPUT_DIR/art/a.txt"'
    )
    pair = tmp_path / "results" / "task" / "custom" / "x" / "m"
    result = run_program(command, {}, {}, str(pair), 30, image_output=str(inside))
    assert result["exit_code"] == 0 and result["files"] == ["art/a.txt", "metrics.json"]
    assert result["metrics_text"].strip() == '{"metrics": [{"name": "acc", "value": 0.5}]}'
    assert not pair.exists() and result["archive"]  # nothing written on the host's path from the container
    unpack(result["archive"], str(pair))
    assert sorted(p.relative_to(pair).as_posix() for p in pair.rglob("*") if p.is_file()) == [
        "output/art/a.txt",
        "output/metrics.json",
        "program.log",
    ]
    assert f"writing to {inside}" in (pair / "program.log").read_text()

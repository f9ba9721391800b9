"""The Custom Evaluation gateway on a real local Ray cluster: a user's program calls EVAL_INFERENCE_URL, a
Ray Serve application rayeval runs for the task, which applies the task's parameters, limiter and retries
on the way to the project's stub OpenAI server, keeps the credential, counts usage, and is gone when the
task ends; `direct: true` keeps the program on the model itself."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import rayeval
from rayeval.cli import main
from rayeval.custom.gateway import APP_PREFIX, with_parameters
from rayeval.custom.packing import config_fingerprint, program_env
from rayeval.spec import CustomConfigSpec, ModelSpec, Parameters

TOKEN = "sk-gateway-secret-24680"
SECRET = f"Bearer {TOKEN}"
SECRET_VAR = "RAYEVAL_TEST_GATEWAY_KEY"

#: The user's program: N questions at once (the odd ones with their own temperature), then, through the
#: gateway, a request for a model the service does not have, a streaming one, one that fails more often than
#: the task retries (the stub's control endpoint told to fail it), and /v1/models.
PROGRAM = r"""
import hashlib, json, os, sys, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

url, out = os.environ["EVAL_INFERENCE_URL"], os.environ["EVAL_OUTPUT_DIR"]
n, direct = int(sys.argv[1]), "--direct" in sys.argv


def call(method, target, body=None):
    headers = {"Content-Type": "application/json"}
    if os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE"):
        headers[os.environ["EVAL_AUTHORIZATION_HEADER_KEY"]] = os.environ["EVAL_AUTHORIZATION_HEADER_VALUE"]
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(target, data, headers, method=method), timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ask(i, model=None, **extra):
    content = f"Q{i}: what is {i} + {i}?"
    body = {"model": model or os.environ["EVAL_MODEL_NAME"], "messages": [{"role": "user", "content": content}]}
    return call("POST", url, {**body, **({"temperature": 0.1} if i % 2 else {}), **extra})


with ThreadPoolExecutor(n) as pool:
    answers = list(pool.map(ask, range(n)))
ok = [a for s, a in answers if s == 200]
seen = {
    "statuses": [s for s, _ in answers],
    "tokens": [sum(a["usage"][k] for a in ok) for k in ("prompt_tokens", "completion_tokens")],
    "auth_sha256": hashlib.sha256(os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE", "").encode()).hexdigest(),
    "url": url,
}
if not direct:
    seen["env"] = dict(os.environ)
    seen["unknown"] = ask(100, model="no-such-model")
    seen["stream"] = ask(101, stream=True)
    call("POST", os.environ["STUB_CONTROL"], {"fail_first": 9, "fail_first_kind": "500"})
    seen["failing"] = ask(102)
    call("POST", os.environ["STUB_CONTROL"], {"fail_first": 0})
    seen["models"] = call("GET", url.rsplit("/chat/completions", 1)[0] + "/models")
    if os.environ.get("HOLD"):  # a long program: stopped while it runs
        print("holding", flush=True)
        time.sleep(120)
with open(os.path.join(out, "seen.json"), "w") as f:
    json.dump(seen, f)
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"metrics": [{"name": "answered", "value": len(ok) / n}]}, f)
"""


@pytest.fixture
def program(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(SECRET_VAR, SECRET)
    path = tmp_path / "gateway_program.py"
    path.write_text(PROGRAM)
    return path


def _task(name, tmp_path, server, program, configs, **parameters):
    model = {"name": "m-a", "url": server.url, "model": "m-a", "auth_header_value": f"${{env:{SECRET_VAR}}}"}
    return {
        "name": name,
        "mode": "custom",
        "output": str(tmp_path / "out"),
        "models": [model],
        "parameters": parameters,
        "custom": [
            {"name": c, "evaluation_sets": sets, "mounts": [str(program)], "command": f"python {program.name} {args}",
             "env": {"STUB_CONTROL": f"{server.base_url}/_config", **env}, **extra}
            for c, sets, args, env, extra in configs
        ],
    }  # fmt: skip


def _record(task_id: str) -> dict:
    import ray

    from rayeval.actors.coordinator import get_coordinator

    return ray.get(get_coordinator().get.remote(task_id))


def _gateways(task_id: str) -> list[str]:
    from ray import serve

    return [a for a in serve.status().applications if a.startswith(f"{APP_PREFIX}-{task_id}-")]


def _limiter_alive(task_id: str, epoch: int) -> bool:
    import ray

    from rayeval.actors.limiter import NAMESPACE, limiter_name

    try:
        ray.get_actor(limiter_name(task_id, "m-a", epoch), namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def _text_of(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- without Ray


def test_the_gateway_fills_in_the_tasks_sampling_parameters_where_the_request_leaves_them_out():
    sampling = Parameters(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, max_tokens=24)
    asked = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}
    assert with_parameters(asked, "m", sampling) == {
        "model": "m", "max_tokens": 24, "temperature": 0.1, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
        "messages": asked["messages"],
    }  # fmt: skip
    greedy = sampling.model_copy(update={"do_sample": False})
    assert with_parameters({"prompt": "x"}, "m", greedy) == {"model": "m", "max_tokens": 24, "temperature": 0.0,
                                                             "prompt": "x"}  # fmt: skip
    own = {"model": "theirs", "prompt": "x", "top_p": 0.5, "max_completion_tokens": 8}
    assert with_parameters(own, "m", greedy) == {"temperature": 0.0, **own}  # the program's fields win


def test_the_program_gets_the_gateway_and_no_credential_unless_direct(tmp_path):
    model = ModelSpec.model_validate(
        {"name": "m", "url": "http://10.0.0.9:8000/v1", "model": "served", "auth_header_value": SECRET}
    )
    cfg = CustomConfigSpec.model_validate({"name": "c", "evaluation_sets": ["s"], "command": "run"})
    base = "http://127.0.0.1:8000/rayeval-gateway/t/1/c/m/v1"
    env, secret = program_env(cfg, model, SECRET, None, [], base)
    assert env["EVAL_INFERENCE_URL"] == f"{base}/chat/completions" and env["EVAL_MODEL_NAME"] == "served"
    assert secret == {"EVAL_AUTHORIZATION_HEADER_VALUE": ""} and TOKEN not in json.dumps(env)
    direct = cfg.model_copy(update={"direct": True})
    env, secret = program_env(direct, model, SECRET, None, [], None)
    assert env["EVAL_INFERENCE_URL"] == "http://10.0.0.9:8000/v1/chat/completions"
    assert secret == {"EVAL_AUTHORIZATION_HEADER_VALUE": SECRET}
    # Configurations written before the switch keep their fingerprint; a direct one is another configuration.
    assert config_fingerprint(cfg) != config_fingerprint(direct)
    with pytest.raises(ValueError, match="direct"):
        CustomConfigSpec.model_validate({"name": "c", "evaluation_sets": ["s"], "command": "run", "direct": "maybe"})


# ----------------------------------------------------------------------------- on a real cluster


def test_programs_call_the_model_through_the_tasks_gateway(ray_cluster, stub_server, tmp_path, program):
    from rayeval.analysis.text import progress_lines

    server = stub_server(api_key=TOKEN, models=("m-a",), latency=0.25)
    server.fail_first(2, "500")  # the first two of the program's requests: retried by the gateway
    n = 12
    task = _task(
        "custom-gateway", tmp_path, server, program,
        [("gw", ["qa", "math"], str(n), {}, {}), ("plain", ["qa"], "2 --direct", {}, {"direct": True})],
        MAX_CONCURRENCY=3, MAX_RETRY_PER_QUERY=3, TEMPERATURE=0.7, TOP_P=0.9, MAX_TOKENS=24,
    )  # fmt: skip
    handle = rayeval.run(task)
    record = _record(handle.task_id)
    assert record["state"] == "succeeded", record.get("error")
    out = tmp_path / "out" / handle.task_id / "custom"
    seen = json.loads((out / "gw" / "m-a" / "output" / "seen.json").read_text())

    # Every answer came through the gateway, never more than MAX_CONCURRENCY of them at the model at once.
    assert seen["statuses"] == [200] * n
    assert 2 <= server.max_in_flight <= 3
    assert seen["url"].startswith("http://127.0.0.1:") and f"/{APP_PREFIX}/{handle.task_id}/" in seen["url"]
    # The task's sampling parameters where the program left them out; the program's own temperature wins.
    bodies: dict[str, dict] = {}
    for b in server.received[:-2]:  # the gateway's (the direct program's 2 come last)
        bodies.setdefault(b["messages"][0]["content"].split(":")[0], b)
    for i in range(n):
        body = bodies[f"Q{i}"]
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.1 if i % 2 else 0.7, 0.9, 24), body
    # Failures: 500s retried (MAX_RETRY_PER_QUERY 3); after the last retry the model's status and error body.
    assert seen["failing"][0] == 500 and "error" in seen["failing"][1]
    assert seen["unknown"][0] == 404 and "does not exist" in seen["unknown"][1]["error"]["message"]
    assert seen["stream"][0] == 400 and "streaming" in seen["stream"][1]["error"]["message"]
    assert seen["models"][0] == 200 and [m["id"] for m in seen["models"][1]["data"]] == ["m-a"]
    # The stub saw: 12 answered + 2 retried, the unknown model once, the failing one 4 times (3 retries),
    # then the direct program's 2.
    assert server.total_requests == n + 2 + 1 + 4 + 2
    # The credential stays with the gateway (it sent it on every request); the program had none.
    assert all(h.get("authorization") == SECRET for h in server.headers_seen)
    assert seen["env"]["EVAL_AUTHORIZATION_HEADER_VALUE"] == ""
    assert not [k for k, v in seen["env"].items() if TOKEN in v], "a credential in the program's environment"

    # Usage and progress, as the other modes have them.
    outcome = json.loads((out / "gw" / "m-a" / "outcome.json").read_text())
    assert outcome["usage"] == {
        "requests": n + 2, "failed": 2, "retries": 2 + 3,
        "prompt_tokens": seen["tokens"][0], "completion_tokens": seen["tokens"][1],
    }  # fmt: skip
    assert seen["tokens"][0] > 0 and seen["tokens"][1] > 0
    rows = {r["eval_set"]: r for r in record["summary"]}
    assert rows["gw"]["requests"] == n + 2 and rows["gw"]["prompt_tokens"] == seen["tokens"][0]
    assert rows["gw"]["value"] == 1.0
    stages = record["stages"]["m-a"]
    assert stages["qa"]["inferred"] == stages["math"]["inferred"] == n  # answered requests
    assert any(line.startswith("m-a / math:") and f"inferred {n}" in line for line in progress_lines(record))

    # `direct: true`: the program called the model itself, with the credential, and nothing was applied.
    plain = json.loads((out / "plain" / "m-a" / "output" / "seen.json").read_text())
    assert plain["url"] == f"{server.url}/chat/completions" and plain["statuses"] == [200, 200]
    assert plain["auth_sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
    direct_bodies = server.received[-2:]
    assert all("top_p" not in b and "max_tokens" not in b for b in direct_bodies)
    assert json.loads((out / "plain" / "m-a" / "outcome.json").read_text())["usage"] is None
    assert "requests" not in rows["plain"] and rows["plain"]["value"] == 1.0
    # `rayeval results`' usage view: the model's requests and tokens through the gateway (direct pairs: none).
    shown = CliRunner().invoke(main, ["results", handle.task_id, "--format", "json"]).output
    used = {u["model"]: u for u in json.loads(shown)["usage"]}
    assert (used["m-a"]["items"], used["m-a"]["prompt_tokens"]) == (n + 2, seen["tokens"][0]), used

    # The gateway and its limiter are gone; no credential reached a log, a result or the record.
    assert _gateways(handle.task_id) == [] and not _limiter_alive(handle.task_id, record["epoch"])
    events = "\n".join(e["message"] for e in record["events"])
    assert "request(s) through the gateway" in events
    for text in (events, _text_of(tmp_path / "out"), json.dumps(record)):
        assert TOKEN not in text


def test_a_stop_takes_the_gateway_down(ray_cluster, stub_server, tmp_path, program):
    server = stub_server(api_key=TOKEN, models=("m-a",))
    task = _task("custom-gateway-stop", tmp_path, server, program, [("held", ["qa"], "2", {"HOLD": "1"}, {})])
    handle = rayeval.run(task, wait=False)
    log = tmp_path / "out" / handle.task_id / "custom" / "held" / "m-a" / "program.log"
    deadline = time.monotonic() + 90
    while not (log.exists() and "holding" in log.read_text()):
        assert time.monotonic() < deadline, "the program did not get its answers"
        time.sleep(0.2)
    assert len(_gateways(handle.task_id)) == 1
    record = rayeval.stop(handle.task_id, wait=60)
    assert record["state"] == "stopped"
    assert _gateways(handle.task_id) == [] and not _limiter_alive(handle.task_id, record["epoch"])
    assert server.total_requests == 2 + 1 + 1  # its answers, the unknown model, the failing one (no retries)


def test_a_new_run_of_a_task_removes_the_gateway_an_earlier_run_left(ray_cluster, stub_server):
    import ray

    from rayeval.custom.gateway import GatewayModel, start_gateway
    from rayeval.inference.client import resolve_endpoint

    server = stub_server(models=("m-a",))
    model = ModelSpec.model_validate({"name": "m-a", "url": server.url})
    gateway = [GatewayModel("m-a", resolve_endpoint(model, None), Parameters())]
    left = start_gateway("custom-gateway-left", 1, gateway, {"c": ["s"]})  # its driver died: nobody closes it
    again = start_gateway("custom-gateway-left", 2, gateway, {"c": ["s"]})
    try:
        assert _gateways("custom-gateway-left") == [again.app] != [left.app]
    finally:
        again.close()
        for limiter in left.limiters:  # the earlier run's, which died with its driver in real life
            ray.kill(limiter)
    assert _gateways("custom-gateway-left") == []

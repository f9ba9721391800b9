"""Fingerprints change with what changes a result, and only with that."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from rayeval.spec import MetricRef, ModelSpec, Parameters
from rayeval.store.fingerprint import inference_fingerprint, item_fp_column, metric_fingerprint, model_identity


def _fp(model=None, **params):
    model = ModelSpec.model_validate(model or {"name": "m", "url": "http://127.0.0.1:9/v1", "model": "x"})
    return inference_fingerprint(model, Parameters.model_validate(params))


def test_performance_settings_do_not_change_the_inference_fingerprint():
    base = _fp(temperature=0.5)
    assert base == _fp(temperature=0.5, MAX_CONCURRENCY=3, MAX_RETRY_PER_QUERY=5, REQUEST_TIMEOUT=9)
    assert base == _fp(temperature=0.5, MAX_JUDGING_CONCURRENCY=2)


def test_what_changes_answers_changes_the_inference_fingerprint():
    base = _fp(temperature=0.5)
    changed = [
        _fp(temperature=0.7),
        _fp(temperature=0.5, max_tokens=10),
        _fp(temperature=0.5, system_prompt="Be brief."),
        _fp(temperature=0.5, INFERENCE_COUNT=2),
        _fp({"name": "m", "url": "http://127.0.0.1:9/v1", "model": "y"}, temperature=0.5),
        _fp({"name": "m", "url": "http://127.0.0.1:8/v1", "model": "x"}, temperature=0.5),
    ]
    assert len({base, *changed}) == len(changed) + 1
    assert _fp({"name": "other-name", "url": "http://127.0.0.1:9/v1/", "model": "x"}, temperature=0.5) == base


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYEVAL_HOME", str(tmp_path / "home"))  # the weight digests' cache goes there


def test_hosted_models_are_identified_by_weights_and_output_engine_settings(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"hidden_size": 8}')
    (ckpt / "model.safetensors").write_bytes(b"0" * 100)
    model = {"name": "m", "path": str(ckpt), "engine": {"max_model_len": 256}}
    spec = ModelSpec.model_validate(model)
    ident = model_identity(spec, str(ckpt))
    replicas = ModelSpec.model_validate({**model, "engine": {"max_model_len": 256, "replicas": 3}})
    assert model_identity(replicas, str(ckpt)) == ident  # placement does not change answers
    longer = ModelSpec.model_validate({**model, "engine": {"max_model_len": 512}})
    assert model_identity(longer, str(ckpt)) != ident
    (ckpt / "model.safetensors").write_bytes(b"0" * 101)  # retrained weights at the same path
    assert model_identity(spec, str(ckpt)) != ident


def test_weights_are_identified_by_content_hashed_once_per_file_version(tmp_path):
    import os

    from rayeval.paths import digests_file
    from rayeval.store.content_digest import file_digest

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"hidden_size": 8}')
    weights = ckpt / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    spec = ModelSpec.model_validate({"name": "m", "path": str(ckpt)})
    first = model_identity(spec, str(ckpt))
    weights.write_bytes(b"b" * 4096)  # retrained in place: same name, same size, other bytes
    second = model_identity(spec, str(ckpt))
    assert second != first
    cached = json.loads(digests_file().read_text())
    assert list(cached) == [str(weights)] and cached[str(weights)]["digest"] == file_digest(str(weights))
    # the cache is keyed on size and modification time: a file at its hashed version is not read again
    stat = weights.stat()
    weights.write_bytes(b"c" * 4096)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_identity(spec, str(ckpt)) == second  # read from the cache (bytes changed behind its back)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: hashed again
    assert model_identity(spec, str(ckpt)) not in (first, second)


def test_item_and_metric_fingerprints(tmp_path):
    fp = _fp()
    items = pa.table({"item_id": ["a", "a"], "query": ["q1", "q2"], "reference": ["r", "r"], "fields": [None, None]})
    first, second = item_fp_column(items, fp, given=False)
    assert first != second
    # the same item scored by log-likelihood is another answer: a set changing mode reuses nothing
    by_set = items.append_column("eval_set", pa.array(["mc", "other"]))
    likely, same = item_fp_column(by_set, fp, given=False, likelihood_sets=("mc",))
    assert likely != first and same == second
    pre = {"preprocess": "def preprocess(i): ..."}
    ref = MetricRef(name="exact_match", preprocess="a/pre.py").with_script_sources(pre)
    moved = MetricRef(name="exact_match", preprocess="b/pre.py").with_script_sources(pre)  # the same script elsewhere
    assert metric_fingerprint(ref) == metric_fingerprint(moved)
    edited = ref.with_script_sources({"preprocess": "def preprocess(i): 1"})
    assert metric_fingerprint(ref) != metric_fingerprint(edited)
    optioned = MetricRef(name="exact_match", preprocess="a/pre.py", options={"x": 1}).with_script_sources(pre)
    assert metric_fingerprint(ref) != metric_fingerprint(optioned)
    for name, text in (("p.txt", "{prediction}"), ("q.txt", "{prediction}"), ("r.txt", "{query}")):
        (tmp_path / name).write_text(text)

    def judged(prompt_file: str) -> MetricRef:
        parser = {"kind": "regex", "pattern": r"(\d)"}
        return MetricRef.model_validate(
            {"name": "j", "judge": {"model": "r", "prompt_file": str(tmp_path / prompt_file), "parser": parser}}
        )

    judge = judged("p.txt")
    assert metric_fingerprint(judge) == metric_fingerprint(judged("q.txt"))  # where the prompt is kept: no matter
    assert metric_fingerprint(judge) != metric_fingerprint(judged("r.txt"))
    assert metric_fingerprint(judge, {"url": "a"}) != metric_fingerprint(judge, {"url": "b"})

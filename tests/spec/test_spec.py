"""Task spec: validation errors name file and field; aliases; secrets never stored."""

from __future__ import annotations

import json

import pytest

from rayeval.errors import SpecError
from rayeval.spec import load_task, parse_task, resolve_secret


def _task(**over):
    base = {
        "name": "t",
        "mode": "inference_and_evaluation",
        "evaluation_sets": [{"name": "s", "path": "data.jsonl", "metrics": ["exact_match"]}],
        "models": [{"name": "m", "url": "http://127.0.0.1:9/v1"}],
    }
    base.update(over)
    return base


def test_loads_yaml_and_resolves_paths_relative_to_the_file(tmp_path):
    (tmp_path / "task.yaml").write_text(
        "name: demo\nmode: inference_and_evaluation\noutput: out\n"
        "evaluation_sets:\n  - {name: s, path: data/q.jsonl, metrics: [f1, {name: rouge}]}\n"
        "models:\n  - {name: m, url: 'http://127.0.0.1:9/v1'}\n"
        "parameters: {MAX_CONCURRENCY: 7, MAX_RETRY_PER_QUERY: 2, max_tokens: 64, do_sample: false}\n"
    )
    spec = load_task(tmp_path / "task.yaml")
    assert spec.output == str(tmp_path / "out")
    assert spec.evaluation_sets[0].path == str(tmp_path / "data" / "q.jsonl")
    assert [m.name for m in spec.evaluation_sets[0].metrics] == ["f1", "rouge"]
    p = spec.parameters
    assert (p.max_concurrency, p.max_retry_per_query, p.max_tokens, p.do_sample) == (7, 2, 64, False)


def test_defaults_follow_the_platform():
    spec = parse_task(_task())
    assert spec.parameters.max_concurrency == 24
    assert spec.parameters.max_retry_per_query == 0


def test_unknown_key_names_file_and_field(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps(_task(models=[{"name": "m", "url": "http://x:1/v1", "temprature": 1}])))
    with pytest.raises(SpecError) as e:
        load_task(f)
    assert str(f) in str(e.value)
    assert e.value.field == "models.0.temprature"
    assert "unknown key" in str(e.value)


def test_invalid_yaml_gives_line(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("name: x\nmodels: [\n  - broken: : :\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        load_task(f)


def test_missing_file():
    with pytest.raises(SpecError, match="task file not found"):
        load_task("/nonexistent/task.yaml")


@pytest.mark.parametrize(
    ("over", "field", "text"),
    [
        ({"mode": "nope"}, "mode", "evaluation_only"),
        ({"models": [{"name": "m"}]}, "(top level)", "needs `url`"),
        ({"models": [{"name": "bad name!", "url": "http://x:1"}]}, "models.0.name", "invalid name"),
        ({"models": [{"name": "m", "url": "ftp://x"}]}, "models.0.url", "http://"),
        ({"parameters": {"MAX_CONCURRENCY": 0}}, "parameters.MAX_CONCURRENCY", "greater than or equal to 1"),
        ({"evaluation_sets": []}, "evaluation_sets", "at least 1"),
    ],
)
def test_field_errors(over, field, text):
    with pytest.raises(SpecError) as e:
        parse_task(_task(**over))
    assert e.value.field == field
    assert text in str(e.value)


def test_evaluation_only_needs_predictions_per_model():
    data = _task(mode="evaluation_only", models=[{"name": "a"}, {"name": "b"}])
    data["evaluation_sets"][0]["predictions"] = {"a": "pred_a"}
    with pytest.raises(SpecError, match="no predictions for model 'b'"):
        parse_task(data)
    data["evaluation_sets"][0]["prediction_files"] = {"b": "b.jsonl"}
    spec = parse_task(data)
    assert spec.evaluation_sets[0].predictions == {"a": "pred_a"}


def test_secrets_are_redacted_and_env_references_kept(monkeypatch):
    spec = parse_task(
        _task(
            models=[
                {"name": "lit", "url": "http://x:1/v1", "auth_header_value": "Bearer sk-LITERAL-SECRET"},
                {"name": "env", "url": "http://x:1/v1", "auth_header_value": "Bearer ${env:MY_KEY}"},
            ]
        )
    )
    stored = json.dumps(spec.redacted())
    assert "sk-LITERAL-SECRET" not in stored
    assert "${env:MY_KEY}" in stored
    assert "sk-LITERAL-SECRET" not in repr(spec)
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    assert resolve_secret(spec.models[1].auth_header_value, field="f") == "Bearer sk-from-env"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(SpecError, match="MY_KEY is not set") as e:
        resolve_secret(spec.models[1].auth_header_value, field="models.1.auth_header_value")
    assert "sk-" not in str(e.value)


def test_model_parameters_override_task_parameters():
    spec = parse_task(
        _task(
            parameters={"temperature": 0.7, "MAX_CONCURRENCY": 8},
            models=[{"name": "m", "url": "http://x:1/v1", "parameters": {"temperature": 0.1}}],
        )
    )
    p = spec.model_parameters(spec.models[0])
    assert (p.temperature, p.max_concurrency) == (0.1, 8)


def test_hosted_models_and_judges_are_declared_alike(tmp_path):
    tiny = {"builtin": "tiny-random-llama", "engine": {"MAX_MODEL_LEN": 512}}
    spec = parse_task(
        _task(
            models=[{"name": "hosted", **tiny}, {"name": "svc", "url": "http://127.0.0.1:9/v1"}],
            judges=[{"name": "judge", "path": "ckpt"}, {"name": "judge-svc", "url": "http://127.0.0.1:9/v1"}],
        ),
        base_dir=tmp_path,
    )
    assert [m.name for m in spec.hosted_models()] == ["hosted", "judge"]
    assert spec.judges[0].path == str(tmp_path / "ckpt")  # relative to the task file, like data paths
    assert spec.models[0].engine.max_model_len == 512
    with pytest.raises(SpecError, match="judges and models share names"):
        parse_task(_task(judges=[{"name": "m", "url": "http://127.0.0.1:9/v1"}]))
    with pytest.raises(SpecError, match="judges.0 .* needs `url`"):
        parse_task(_task(judges=[{"name": "j"}]))


def _judged_task(**over):
    return _task(judges=[{"name": "referee", "url": "http://127.0.0.1:9/v1"}], **over)


def test_quick_configuration_fills_sets_and_extends_overrides(tmp_path):
    (tmp_path / "conf" / "prompts").mkdir(parents=True)
    (tmp_path / "conf" / "prompts" / "grade.txt").write_text("Grade {prediction} against {reference}.")
    (tmp_path / "conf" / "metrics.yaml").write_text(
        """
s:
  - f1
  - name: graded
    preprocess: scripts/pre.py
    judge:
      model: referee
      prompt_file: prompts/grade.txt
      parser: {kind: regex, pattern: "Score: (\\\\d)", min_score: 1, max_score: 5, normalize: true}
  - name: graded_ab
    extends: graded
    judge: {parser: {kind: labels, labels: {A: 1, B: 0}}, max_tokens: 5}
"""
    )
    spec = parse_task(_judged_task(metrics_config="conf/metrics.yaml"), base_dir=tmp_path)
    metrics = {m.name: m for m in spec.evaluation_sets[0].metrics}
    assert list(metrics) == ["exact_match", "f1", "graded", "graded_ab"]  # the set's own first
    graded, ab = metrics["graded"], metrics["graded_ab"]
    assert graded.judge.prompt == "Grade {prediction} against {reference}."  # read relative to the file
    assert graded.preprocess == str(tmp_path / "conf" / "scripts" / "pre.py")
    assert ab.judge.parser.kind == "labels" and ab.judge.max_tokens == 5  # overridden
    assert ab.judge.prompt == graded.judge.prompt and ab.preprocess == graded.preprocess  # inherited
    assert graded.judge.parser.kind == "regex"  # the original is untouched
    stored = spec.redacted()  # what a restart validates again: the same spec, nothing applied twice
    assert "metrics_config" not in stored and parse_task(stored).redacted() == stored


@pytest.mark.parametrize(
    "config, message",
    [
        ("other: [f1]\n", "names sets the task does not have: other"),
        ("s: [{name: x, extends: nowhere}]\n", "extends 'nowhere', which no set defines"),
        ("s: [{name: a, extends: b}, {name: b, extends: a}]\n", "`extends` loops"),
        ("- f1\n", "must map evaluation-set names to lists"),
        (None, "metrics_config file .* not found"),
    ],
)
def test_bad_quick_configuration_is_a_clear_error(tmp_path, config, message):
    if config is not None:
        (tmp_path / "metrics.yaml").write_text(config)
    with pytest.raises(SpecError, match=message):
        parse_task(_judged_task(metrics_config="metrics.yaml"), base_dir=tmp_path)


def test_a_judge_prompt_is_given_once(tmp_path):
    judge = {"model": "referee", "parser": {"kind": "labels", "labels": {"A": 1}}}
    sets = [{"name": "s", "path": "d.jsonl", "metrics": [{"name": "j", "judge": judge}]}]
    with pytest.raises(SpecError, match="exactly one of `prompt` and `prompt_file`"):
        parse_task(_judged_task(evaluation_sets=sets), base_dir=tmp_path)
    judge["prompt_file"] = "missing.txt"
    with pytest.raises(SpecError, match="prompt_file .*missing.txt' cannot be read"):
        parse_task(_judged_task(evaluation_sets=sets), base_dir=tmp_path)


def test_the_json_schema_takes_every_example_and_refuses_what_validation_refuses():
    import json
    from pathlib import Path

    import jsonschema
    from click.testing import CliRunner

    from rayeval.cli import main
    from rayeval.spec.unique_keys import load_yaml

    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    examples = sorted(Path(__file__).resolve().parents[2].glob("examples/**/*.yaml"))
    assert len(examples) >= 4
    for path in examples:  # short forms too: bare metric names, lower-case parameter names
        jsonschema.validate(load_yaml(path.read_text(encoding="utf-8")), schema)
    task = {
        "name": "t",
        "mode": "inference_and_evaluation",
        "models": [{"name": "m", "url": "http://127.0.0.1:9/v1"}],
        "parameters": {"max_tokens": 8, "MAX_CONCURRENCY": 4},
        "evaluation_sets": [{"name": "s", "path": "x.jsonl", "metrics": ["exact_match", {"name": "f1"}]}],
    }
    jsonschema.validate(task, schema)
    for bad in ({**task, "colour": "blue"}, {**task, "parameters": {"MAX_TOKEN": 8}}, {**task, "mode": "quick"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_a_hosted_models_resources_in_one_line():
    from rayeval.spec import EngineSpec

    assert EngineSpec().describe() == "1 replica, each 1 GPU where the cluster has GPUs (else none) and 1 CPU"
    big = EngineSpec(gpus_per_replica=2, tensor_parallel_size=2, accelerator_type="H100", replicas=3)
    assert big.describe() == "3 replicas, each 2 GPU (H100) and 1 CPU, tensor parallel 2"
    assert (
        EngineSpec(min_replicas=0, max_replicas=4, gpus_per_replica=0)
        .describe()
        .startswith("0 to 4 replicas, each 0 GPU")
    )


def test_a_mount_target_is_a_place_inside_the_working_directory(tmp_path):
    from rayeval.spec import CustomConfigSpec

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")

    def config(*mounts):
        return CustomConfigSpec(name="c", evaluation_sets=["s"], command="true", mounts=list(mounts))

    placed = config({"path": str(tmp_path / "a.txt"), "target": "data/a.txt"}, str(tmp_path / "b.txt"))
    assert [m.placed for m in placed.mounts] == ["data/a.txt", "b.txt"]
    for target, message in (("/etc/a", "relative, without '..'"), ("../a", "relative, without '..'")):
        with pytest.raises(ValueError, match=message):
            config({"path": str(tmp_path / "a.txt"), "target": target})
    with pytest.raises(ValueError, match="a shared one is used where it is"):
        config({"path": "/mnt/x", "shared": True, "target": "x"})
    with pytest.raises(ValueError, match="two mounts would be placed at a.txt"):
        config(str(tmp_path / "a.txt"), {"path": str(tmp_path / "b.txt"), "target": "a.txt"})


def test_a_stored_spec_with_built_in_sets_parses_again():
    """spec.json (what restart, copy and the item view read) holds each set's default column mapping; a
    built-in set takes it, and refuses only a mapping of the user's."""
    from rayeval.errors import SpecError

    data = {
        "name": "t",
        "mode": "inference_and_evaluation",
        "output": "/tmp/o",
        "models": [{"name": "m", "url": "http://127.0.0.1:9/v1"}],
        "evaluation_sets": [{"name": "g", "builtin": "gsm8k"}, {"name": "h", "builtin": "hellaswag", "limit": 3}],
    }
    stored = parse_task({**data, "models": [{**data["models"][0], "tokenizer": "/tok"}]}).redacted()
    assert "columns" in stored["evaluation_sets"][0]
    again = parse_task(stored)
    assert again.redacted() == stored and again.evaluation_sets[1].loglikelihood
    with pytest.raises(SpecError, match="brings its own columns"):
        parse_task({**data, "evaluation_sets": [{"name": "g", "builtin": "gsm8k", "columns": {"query": "q"}}]})

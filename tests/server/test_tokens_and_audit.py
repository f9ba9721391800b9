"""The server's API tokens, audit log, submission rules and config file, without Ray (the fast tier)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rayeval.cli import main
from rayeval.server import AuditLog, ServerConfig, TokenStore
from rayeval.server.policy import PolicyError, check_spec, prepare_data
from rayeval.server.tasks import credentials, parse_spec_text
from rayeval.server.tokens import Caller, TokenError, hash_token, parse_token
from rayeval.spec import parse_task

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> str:
    return "".join(p.read_text() for p in folder.rglob("*") if p.is_file())


def test_a_token_is_shown_once_and_only_its_hash_is_stored(tmp_path):
    store = TokenStore(str(tmp_path), cache_s=0)
    issued = store.create("alice", ["team-a", " team-a ", "x"])
    token = issued.token
    assert token.startswith("rve_") and parse_token(token) == issued.record.id
    assert len(token.split("_", 2)[2]) >= 43  # token_urlsafe(32): 256 random bits
    stored = _files(tmp_path / "tokens")
    assert token not in stored and token.split("_", 2)[2] not in stored
    assert hash_token(token) in stored
    assert issued.record.tags == ["team-a", "x"]
    assert store.verify(token) == Caller(name="alice", tags=["team-a", "x"], admin=False)
    assert store.verify(token).visible_tags == ["team-a", "x"]


def test_forged_malformed_unknown_and_missing_tokens_are_refused(tmp_path):
    store = TokenStore(str(tmp_path), cache_s=0)
    token = store.create("alice", ["team-a"]).token
    prefix, token_id, secret = token.split("_", 2)
    forged = f"{prefix}_{token_id}_{'A' * len(secret)}"
    other_id = f"{prefix}_{'0' * 12}_{secret}"
    for bad in (None, "", "Bearer", token[:-1], token + "x", forged, other_id, "rve_nothex_" + secret, secret):
        assert store.verify(bad) is None, bad


def test_revoked_and_expired_tokens_are_refused_and_revocation_is_read_again(tmp_path):
    server_side = TokenStore(str(tmp_path), cache_s=0.2)
    admin_side = TokenStore(str(tmp_path))
    alice = admin_side.create("alice", ["team-a"]).token
    short = admin_side.create("temp", ["team-a"], expires_in=timedelta(seconds=0.5)).token
    old = admin_side.create("old", ["team-a"], expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)).token
    assert server_side.verify(alice) is not None and server_side.verify(short) is not None
    assert server_side.verify(old) is None
    time.sleep(0.6)
    assert server_side.verify(short) is None  # expired while cached: checked at each request
    admin_side.revoke("alice")
    assert server_side.verify(alice) is not None  # the cache, for at most cache_s
    time.sleep(0.3)
    assert server_side.verify(alice) is None
    statuses = {t.name: t.status() for t in admin_side.tokens()}
    assert statuses == {"alice": "revoked", "temp": "expired", "old": "expired"}


def test_token_rules_team_tokens_need_tags_names_are_unique_among_active_tokens(tmp_path):
    store = TokenStore(str(tmp_path), cache_s=0)
    with pytest.raises(TokenError, match="at least one tag"):
        store.create("bob", [])
    with pytest.raises(TokenError, match="token name"):
        store.create("no spaces", ["t"])
    first = store.create("bob", ["team-b"])
    with pytest.raises(TokenError, match="active token is named bob"):
        store.create("bob", ["team-b"])
    store.revoke(first.record.id)  # by id
    second = store.create("bob", ["team-b"])  # the name is free again
    assert store.verify(first.token) is None and store.verify(second.token).name == "bob"
    with pytest.raises(TokenError, match="no active token"):
        store.revoke("nobody")
    admin = store.create("root", admin=True)
    assert store.verify(admin.token).admin and store.verify(admin.token).visible_tags is None


def test_the_audit_log_keeps_names_outcomes_and_no_secret(tmp_path):
    audit = AuditLog(str(tmp_path))
    audit.record("alice", "submit", "t-1", "ok", "task t submitted")
    audit.record(
        "bob", "copy", "t-1", "invalid", "model m: Bearer sk-SECRET-123 refused", secrets=["Bearer sk-SECRET-123"]
    )
    audit.record("alice", "delete", "t-1", "ok", "deleted")
    records = audit.records()
    assert [(r.who, r.action, r.task, r.outcome) for r in records] == [
        ("alice", "submit", "t-1", "ok"),
        ("bob", "copy", "t-1", "invalid"),
        ("alice", "delete", "t-1", "ok"),
    ]
    assert "sk-SECRET-123" not in _files(tmp_path) and "***" in records[1].detail
    assert [r.action for r in audit.records(who="alice")] == ["submit", "delete"]
    assert [r.action for r in audit.records(limit=1)] == ["delete"]
    assert all(r.at.tzinfo is not None for r in records)


def test_the_command_line_issues_lists_revokes_and_audits_tokens(tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "server")
    created = runner.invoke(
        main, ["server", "token", "create", "--name", "alice", "--tags", "team-a", "--store", store]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert parse_token(token) and TokenStore(store).verify(token).tags == ["team-a"]
    listed = runner.invoke(main, ["server", "token", "list", "--store", store, "--json"])
    assert listed.exit_code == 0 and token not in listed.output and "sha256" not in listed.output
    assert json.loads(listed.stdout)[0]["name"] == "alice"
    refused = runner.invoke(main, ["server", "token", "create", "--name", "bob", "--store", store])
    assert refused.exit_code == 2 and "at least one tag" in refused.output
    revoked = runner.invoke(main, ["server", "token", "revoke", "alice", "--store", store])
    assert revoked.exit_code == 0 and TokenStore(store).verify(token) is None
    audit = runner.invoke(main, ["server", "audit", "--store", store, "--json"])
    rows = [(r["action"], r["outcome"]) for r in json.loads(audit.stdout)]
    assert rows == [("token-create", "ok"), ("token-create", "invalid"), ("token-revoke", "ok")]
    assert token not in _files(Path(store)) and token not in audit.output


TEAM_A = Caller(name="alice", tags=["team-a"], admin=False)
ADMIN = Caller(name="root", tags=[], admin=True)


def _config(tmp_path: Path, **over) -> ServerConfig:
    return ServerConfig(
        store=str(tmp_path / "server"), output=str(tmp_path / "results"), data_roots=[str(tmp_path / "data/{tag}")],
        **over,
    )  # fmt: skip


def _task(path: str, **over) -> dict:
    task = {
        "name": "t",
        "tags": ["someone-else"],
        "mode": "inference_and_evaluation",
        "evaluation_sets": [{"name": "q", "path": path, "metrics": ["exact_match"]}],
        "models": [{"name": "m", "url": "http://127.0.0.1:9/v1", "model": "x"}],
    }
    task.update(over)
    return task


def test_a_team_tokens_task_takes_its_tags_and_reads_only_under_its_data_root(tmp_path):
    config = _config(tmp_path)
    mine = tmp_path / "data" / "team-a" / "items.jsonl"
    data = prepare_data(_task(str(mine)), TEAM_A, config)
    assert data["tags"] == ["team-a"] and data["output"] == str(tmp_path / "results")
    spec = check_spec(parse_task(data), TEAM_A, config)
    assert spec.tags == ["team-a"]
    refused = {
        "relative": _task("data/team-a/items.jsonl"),
        "home dir": _task("~/.ray/auth_token"),
        "other team": _task(str(tmp_path / "data" / "team-b" / "items.jsonl")),
        "climbing out": _task(str(tmp_path / "data" / "team-a" / ".." / "team-b" / "x.jsonl")),
        "results": _task(str(tmp_path / "results" / "other-task" / "results")),
        "server store": _task(str(tmp_path / "server" / "tokens")),
        "judge prompt": _task(str(mine), judges=[{"name": "j", "url": "http://h/v1", "model": "x"}])
        | {"metrics_config": "/etc/passwd"},
        "output elsewhere": _task(str(mine), output=str(tmp_path / "elsewhere")),
    }
    for why, task in refused.items():
        with pytest.raises(PolicyError):
            prepare_data(task, TEAM_A, config)
            pytest.fail(why)
    # an administrator's task is its own
    assert prepare_data(_task("rel.jsonl"), ADMIN, config)["tags"] == ["someone-else"]


def test_a_team_token_gives_credentials_literally_and_runs_no_code_of_its_own(tmp_path):
    config = _config(tmp_path)
    mine = str(tmp_path / "data" / "team-a" / "items.jsonl")
    env_ref = _task(mine, models=[{"name": "m", "url": "http://h/v1", "model": "x", "auth_header_value": "${env:K}"}])
    with pytest.raises(PolicyError, match="env"):
        check_spec(parse_task(prepare_data(env_ref, TEAM_A, config)), TEAM_A, config)
    script = tmp_path / "data" / "team-a" / "pre.py"
    script.parent.mkdir(parents=True)
    script.write_text("def preprocess(item):\n    return item\n")
    scripted = _task(mine)
    scripted["evaluation_sets"][0]["metrics"] = [{"name": "exact_match", "preprocess": str(script)}]
    spec = parse_task(prepare_data(scripted, TEAM_A, config))
    with pytest.raises(PolicyError, match="scripts"):
        check_spec(spec, TEAM_A, config)
    assert check_spec(spec, TEAM_A, _config(tmp_path, allow_code=True)).tags == ["team-a"]
    assert check_spec(parse_task(env_ref), ADMIN, config).tags == ["someone-else"]
    hosted = _task(mine, models=[{"name": "m", "builtin": "tiny-random-llama", "engine": {"engine_kwargs": {}}}])
    hosted["models"][0]["engine"]["engine_kwargs"] = {"enforce_eager": True}
    assert check_spec(parse_task(prepare_data(hosted, TEAM_A, config)), TEAM_A, config)
    hosted["models"][0]["engine"]["engine_kwargs"] = {"trust_remote_code": True}
    with pytest.raises(PolicyError, match="trust_remote_code"):
        check_spec(parse_task(prepare_data(hosted, TEAM_A, config)), TEAM_A, config)


def test_a_task_file_that_does_not_parse_is_reported_without_its_text():
    text = "name: t\nmodels:\n  - name: m\n    auth_header_value: Bearer sk-SECRET-9: oops\n"
    with pytest.raises(Exception) as caught:
        parse_spec_text(text)
    assert "line 4" in str(caught.value) and "sk-SECRET-9" not in str(caught.value)
    data = yaml.safe_load("models: [{auth_header_value: Bearer x1}]\njudges: [{auth_header_value: y}]")
    assert credentials(data) == ["Bearer x1", "y"]


def test_the_serve_config_file_deploys_the_server_with_its_args():
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    from rayeval.server.app import build_app

    config = yaml.safe_load((REPO / "rayeval" / "server" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "rayeval.server.app:build_app" and schema.http_options.host == "127.0.0.1"
    assert ServerConfig.model_validate(app.args).data_roots == []
    assert isinstance(build_app(app.args), Application)
    with pytest.raises(ValueError, match="extra"):
        build_app({"stroe": "/x"})

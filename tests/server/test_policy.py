"""What a team token may submit (rayeval.server.policy), without a cluster: the files a task names are
found wherever they stand in the file, and each must be under one of the token's data roots."""

from __future__ import annotations

import pytest

from rayeval.server.config import ServerConfig
from rayeval.server.policy import PolicyError, check_paths, named_files
from rayeval.server.tokens import Caller


def test_every_file_a_task_names_is_found_and_must_be_under_the_tokens_data_root(tmp_path):
    task = {
        "models": [{"name": "m", "url": "http://127.0.0.1:9/v1", "tokenizer": "/home/other/tokenizer"}],
        "evaluation_sets": [
            {"name": "q", "path": f"{tmp_path}/team-a/q.jsonl", "metrics": [{"judge": {"prompt_file": "/etc/p"}}]}
        ],
        "output": "/results",  # the server's to choose: not a file the task reads
    }
    assert sorted(named_files(task)) == ["/etc/p", "/home/other/tokenizer", f"{tmp_path}/team-a/q.jsonl"]
    config = ServerConfig(
        store=str(tmp_path / "store"), output=str(tmp_path / "results"), data_roots=[f"{tmp_path}/{{tag}}"]
    )
    alice = Caller(name="alice", tags=["team-a"], admin=False)
    check_paths([f"{tmp_path}/team-a/q.jsonl"], alice, config)
    for outside in ("/home/other/tokenizer", f"{tmp_path}/team-b/q.jsonl", "relative/q.jsonl"):
        with pytest.raises(PolicyError):
            check_paths([outside], alice, config)
    with pytest.raises(PolicyError, match="rayeval's own files"):
        check_paths([str(tmp_path / "results" / "t1" / "spec.json")], alice, config)

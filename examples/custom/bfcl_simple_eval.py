"""An evaluation program for rayeval's Custom Evaluation mode: BFCL's simple function-calling category.

It reads BFCL's questions and possible answers from the installed `bfcl-eval` package, asks the
model at $EVAL_INFERENCE_URL in BFCL's prompting mode (BFCL's system prompt with the functions,
then the question), judges each answer with bfcl-eval's AST checker (through rayeval's BFCL
metric), and writes $EVAL_OUTPUT_DIR/metrics.json and one line per question to results.jsonl.

    python bfcl_simple_eval.py [--limit N] [--concurrency C] [--max-tokens T]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from rayeval.metrics._bfcl import check
from rayeval.sets.builtin.bfcl import bfcl_system_prompt


def bfcl_data() -> tuple[list[dict], dict[str, list]]:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None:
        sys.exit("bfcl-eval is not installed: pip install --no-deps bfcl-eval==2026.3.23")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    name = "BFCL_v4_simple_python.json"
    questions = [json.loads(line) for line in (data / name).read_text().splitlines() if line.strip()]
    answers = {
        r["id"]: r["ground_truth"]
        for r in (json.loads(line) for line in (data / "possible_answer" / name).read_text().splitlines() if line)
    }
    return questions, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="the first N questions (default all 400)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=512)
    args = parser.parse_args()
    url, out = os.environ["EVAL_INFERENCE_URL"], Path(os.environ["EVAL_OUTPUT_DIR"])
    headers = {"Content-Type": "application/json"}
    if os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE"):
        headers[os.environ["EVAL_AUTHORIZATION_HEADER_KEY"]] = os.environ["EVAL_AUTHORIZATION_HEADER_VALUE"]
    questions, possible = bfcl_data()
    questions = questions[: args.limit]
    print(f"BFCL simple: {len(questions)} questions for {os.environ.get('EVAL_MODEL_NAME')}", flush=True)

    with httpx.Client(headers=headers, timeout=300) as client:

        def one(q: dict) -> dict:
            messages = [{"role": "system", "content": bfcl_system_prompt(q["function"])}, *q["question"][0]]
            body = {"model": os.environ["EVAL_MODEL_NAME"], "messages": messages, "max_tokens": args.max_tokens,
                    "temperature": 0.0}  # fmt: skip
            try:
                response = client.post(url, json=body)
                response.raise_for_status()
                answer = response.json()["choices"][0]["message"]["content"] or ""
            except (httpx.HTTPError, KeyError, ValueError) as e:
                return {"id": q["id"], "error": f"{type(e).__name__}: {e}"[:300]}
            verdict = check(q["function"], answer, possible[q["id"]], "simple")
            return {"id": q["id"], "answer": answer, "valid": bool(verdict["valid"]),
                    "error_type": verdict.get("error_type")}  # fmt: skip

        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, questions))
    with (out / "results.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    answered = [r for r in results if "valid" in r]
    errors = len(results) - len(answered)
    accuracy = sum(r["valid"] for r in answered) / len(results) if results else 0.0
    metrics = [{"name": "bfcl_simple_ast_accuracy", "value": accuracy},
               {"name": "request_errors", "value": errors}]  # fmt: skip
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics}, indent=2))
    print(f"accuracy {accuracy:.4f} over {len(results)} questions ({errors} request errors)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

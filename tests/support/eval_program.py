"""A user's evaluation program for Custom Evaluation tests: it asks the model at EVAL_INFERENCE_URL
a few questions and writes $EVAL_OUTPUT_DIR/metrics.json, or misbehaves as told (--behave)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.request


def ask(question: str) -> str:
    body = {
        "model": os.environ["EVAL_MODEL_NAME"],
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
    }
    headers = {"Content-Type": "application/json"}
    if os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE"):
        headers[os.environ["EVAL_AUTHORIZATION_HEADER_KEY"]] = os.environ["EVAL_AUTHORIZATION_HEADER_VALUE"]
    request = urllib.request.Request(
        os.environ["EVAL_INFERENCE_URL"], data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["choices"][0]["message"]["content"]


HOSTILE = (
    "trap '' TERM; "  # ignores SIGTERM
    "(trap '' TERM; sleep 3601) & "  # a child that ignores it too
    "setsid sh -c 'trap \"\" TERM; sleep 3602' & "  # a grandchild in a session of its own
    "(setsid sh -c 'sleep 3603 & echo $!' &) ; "  # a double-forked daemon
    "sleep 3604"
)


def hostile_tree() -> list[int]:
    """Start a shell that ignores SIGTERM, with a child, a setsid grandchild and a double-forked daemon;
    returns the pids of the shell and of the whole tree it started (once it has started)."""
    import subprocess

    shell = subprocess.Popen(["/bin/sh", "-c", HOSTILE], stdout=subprocess.PIPE, text=True)
    daemon = int(shell.stdout.readline())
    time.sleep(0.5)
    # This tree only (other runs' leftovers on the machine are not ours): the shell's descendants, and the
    # daemon, which its double fork left to whoever reaps orphans.
    return sorted({shell.pid, daemon, *_descendants(shell.pid)})


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat", "rb").read().decode(errors="replace")
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--behave", default="ok")
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--fail-model", default="")
    args = parser.parse_args()
    out = os.environ["EVAL_OUTPUT_DIR"]
    auth = os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE", "")
    print(f"starting {os.environ['EVAL_CONFIG_NAME']} on {os.environ['EVAL_MODEL_NAME']}", flush=True)
    print(f"debug: the credential is {auth}", flush=True)  # a careless program: rayeval must scrub this
    # --fail-model M: fail on model M until the file $RECOVERED_FLAG exists (a restart then succeeds).
    recovered = os.path.exists(os.environ.get("RECOVERED_FLAG", "/nonexistent"))
    if args.behave == "exit" or (os.environ["EVAL_MODEL_NAME"] == args.fail_model and not recovered):
        print("something went wrong", file=sys.stderr, flush=True)
        return 3
    if args.behave == "hang":
        print(f"thinking forever (pid {os.getpid()})", flush=True)
        time.sleep(3600)
    if args.behave == "hostile":  # a tree that a process-group kill misses
        print(f"thinking forever (pid {os.getpid()}, tree {' '.join(map(str, hostile_tree()))})", flush=True)
        time.sleep(3600)
    answers = [ask(f"Question {i}: what is {i} + {i}?") for i in range(args.items)]
    with open(os.path.join(out, "answers.jsonl"), "w") as f:
        f.writelines(json.dumps({"i": i, "answer": a}) + "\n" for i, a in enumerate(answers))
    seen = {k: os.environ[k] for k in ("EVAL_INFERENCE_URL", "EVAL_AUTHORIZATION_HEADER_KEY", "EVAL_MODEL_NAME",
                                       "EVAL_CONFIG_NAME", "EVAL_EVALUATION_SETS", "EVAL_MOUNTS", "EVAL_TAGS",
                                       "GREETING")
            if k in os.environ}  # fmt: skip
    seen["auth_sha256"] = hashlib.sha256(auth.encode()).hexdigest()
    seen["argv"] = sys.argv[1:]
    seen["cwd_files"] = sorted(os.listdir("."))
    with open(os.path.join(out, "env.json"), "w") as f:
        json.dump(seen, f)
    metrics = {"metrics": [{"name": "answered", "value": sum(bool(a) for a in answers) / len(answers)},
                           {"name": "mean_chars", "value": sum(len(a) for a in answers) / len(answers)}]}  # fmt: skip
    text = json.dumps(metrics)
    if args.behave == "nometrics":
        return 0
    if args.behave == "malformed":
        text = text[:-5]
    elif args.behave == "wrongshape":
        text = json.dumps({"answered": 1.0})
    elif args.behave == "nonnumeric":
        text = json.dumps({"metrics": [{"name": "answered", "value": "high"}]})
    with open(os.path.join(out, "metrics.json"), "w") as f:
        f.write(text)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

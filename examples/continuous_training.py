"""The training loop, end to end: fine-tune → re-index → compare → serve as arm B → feedback → report → promote.

    python examples/continuous_training.py --data ../shared/datasets/scifact --out bench-out/loop   # real data
    python examples/continuous_training.py --tiny --out /tmp/loop                                   # seconds (tests)

Every step is the command a user runs (``deepseek-rag finetune``, ``index --adapter``, ``compare``, ``serve
--config``, ``ab-report``) plus the HTTP calls a chat backend makes. With MLflow installed (``[mlflow]``) the
fine-tune run logs its parameters, per-step metrics, report and adapter; the index build and the comparison log to
the same run; the promotion registers the retriever as a model version (store: ``--out``/mlflow.db). Simulated
users send the test queries with an ``X-User-Id`` and rate an answer helpful when a judged-relevant document is in
its top 3.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

KEY = "example-key"
CLAUSES = {
    "termination": "Either party may terminate this agreement with thirty days written notice.",
    "payment": "Invoices are payable within forty-five days of receipt by wire transfer.",
    "confidentiality": "Each party keeps the other party's confidential information secret for five years.",
    "liability": "Neither party is liable for indirect or consequential damages above the fees paid.",
    "law": "This agreement is governed by the laws of the State of New York.",
    "assignment": "Neither party may assign this agreement without the prior written consent of the other.",
}
QUESTIONS = ("How does {} work in this contract?", "What does the contract say about {}?", "Explain the {} clause.",
             "Is there a {} provision?")


def cli(*args: str, env: dict) -> str:
    result = subprocess.run([sys.executable, "-m", "deepseek_rag.cli", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"deepseek-rag {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def tiny_beir(folder: Path) -> Path:
    """A small BEIR folder of contract clauses (train and test questions)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": k, "text": v}) + "\n" for k, v in CLAUSES.items()))
    queries, train, test = [], [], []
    for i, topic in enumerate(CLAUSES):
        for j, template in enumerate(QUESTIONS):
            qid = f"q{i}-{j}"
            queries.append(json.dumps({"_id": qid, "text": template.format(topic)}) + "\n")
            (test if j == len(QUESTIONS) - 1 else train).append(f"{qid}\t{topic}\t1\n")
    (folder / "queries.jsonl").write_text("".join(queries))
    for name, rows in (("train", train), ("test", test)):
        (folder / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="BEIR folder with train and test qrels (default: tiny contracts).")
    parser.add_argument("--out", required=True, help="Working folder (indexes, adapter, serve.toml, mlflow.db).")
    parser.add_argument("--tiny", action="store_true", help="A tiny random model: the loop in seconds, meaningless vectors.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--users", type=int, default=200, help="Simulated users sending queries.")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}", "TOKENIZERS_PARALLELISM": "false"}
    data = Path(args.data).resolve() if args.data else tiny_beir(out / "data")
    model_args: list[str] = []
    if args.tiny:
        from deepseek_rag.testing import build_tiny_model

        texts = [q.format(t) + " " + v for t, v in CLAUSES.items() for q in QUESTIONS]
        model_args = ["--model", str(build_tiny_model(out / "tiny-model", texts))]

    print("1. base index:", cli("index", str(data / "corpus.jsonl"), "--out", str(out / "base"), "--overwrite", *model_args,
                                env=env).strip())
    print("2.", cli("finetune", "--beir", str(data), "--out", str(out / "adapter"), "--epochs", str(args.epochs),
                    "--adapter-mode", "shared", *(["--batch-size", "8", "--dev-fraction", "0"] if args.tiny else []),
                    *model_args, env=env).strip().splitlines()[-1])
    print("3. tuned index:", cli("index", str(data / "corpus.jsonl"), "--out", str(out / "tuned"), "--overwrite",
                                 "--adapter", str(out / "adapter"), *model_args, env=env).strip())
    compared = json.loads(cli("compare", "--data", str(data), str(out / "base"), str(out / "tuned"), "--json", env=env))
    row = compared["metrics"]["ndcg@10"]
    print(f"4. compare: nDCG@10 {row['a']:.4f} → {row['b']:.4f} ({row['difference']:+.4f}, 95% CI {row['ci95']}, "
          f"p = {row['p_randomization']})")

    (out / "serve.toml").write_text('salt = "loop"\nmin_effect = 0.05\n[[arms]]\nname = "base"\nindex = "base"\nweight = 90\n'
                                    'default = true\n[[arms]]\nname = "tuned"\nindex = "tuned"\nweight = 10\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "deepseek_rag.cli", "serve", "--config", str(out / "serve.toml"),
                               "--port", str(port), "--api-key", KEY, "--mlflow-model", "deepseek-rag-retriever"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        simulate(url, data, args.users, env)
    finally:
        server.terminate()
        server.wait(timeout=30)


def simulate(url: str, data: Path, users: int, env: dict) -> None:
    import httpx

    from deepseek_rag.evaluation import load_beir_split

    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    split = load_beir_split(data, "test")
    qids = list(split.queries)
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=60) as client:
        def traffic(count: int) -> None:
            for i in range(count):
                qid = qids[i % len(qids)]
                body = client.post("/v1/retrieve", json={"query": split.queries[qid], "top_k": 3},
                                   headers={"X-User-Id": f"user-{i}"}).json()
                helpful = any(split.qrels[qid].get(h["doc_id"], 0) > 0 for h in body["hits"])
                client.post("/v1/feedback", json={"request_id": body["request_id"], "signal": "helpful" if helpful else "unhelpful"})

        traffic(users)
        print("5. served at 90/10; users routed by a hash of their id. ab-report:")
        print(cli("ab-report", "--url", url, env=env))
        client.put("/v1/admin/arms", json={"weights": {"base": 50, "tuned": 50}}, headers=auth).raise_for_status()
        traffic(users)
        print("6. weights 50/50. ab-report:")
        print(cli("ab-report", "--url", url, env=env))
        response = client.post("/v1/admin/promote", json={"arm": "tuned"}, headers=auth)
        response.raise_for_status()
        promoted = response.json()
        print(f"7. promoted tuned: weights {promoted['weights']}, registered {promoted['registered']}")
    describe_run(Path(env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")))


def describe_run(database: Path) -> None:
    """What MLflow holds for the loop's run (as ``mlflow runs describe`` would show)."""
    try:
        import mlflow
    except ImportError:
        print("8. mlflow is not installed: nothing was tracked (pip install 'deepseek-rag[mlflow]')")
        return
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{database}")
    versions = client.search_model_versions("name='deepseek-rag-retriever'")
    run = client.get_run(versions[0].run_id)
    artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    print(f"8. MLflow run {run.info.run_id}: {len(run.data.params)} params, metrics "
          f"{sorted(k for k in run.data.metrics if k.startswith(('compare.', 'index.', 'loss')))[:8]}..., "
          f"artifacts {artifacts}, tags {sorted(k for k in run.data.tags if k.startswith('deepseek_rag'))}, "
          f"model versions {[v.version for v in versions]}")


if __name__ == "__main__":
    main()

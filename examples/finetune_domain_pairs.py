"""Fine-tune the encoder on your own (question, passage) pairs, then index and search with the adapter.

    python examples/finetune_domain_pairs.py            # bundled all-MiniLM-L6-v2, about a minute on a laptop CPU
    python examples/finetune_domain_pairs.py --tiny     # a tiny random model: seconds (what the tests run)

Needs ``pip install -e finetune`` (distribution deepseek-rag-finetune).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag_finetune import FinetuneConfig, TrainingPair, finetune, write_jsonl_pairs

CLAUSES = {
    "termination": "Either party may terminate this agreement with thirty days written notice.",
    "payment": "Invoices are payable within forty-five days of receipt by wire transfer.",
    "confidentiality": "Each party keeps the other party's confidential information secret for five years.",
    "liability": "Neither party is liable for indirect or consequential damages above the fees paid.",
    "governing law": "This agreement is governed by the laws of the State of New York.",
    "assignment": "Neither party may assign this agreement without the prior written consent of the other.",
    "force majeure": "No party is responsible for delays caused by floods, wars, strikes or epidemics.",
    "warranty": "The supplier warrants that the goods are free from defects for twelve months.",
    "audit": "The customer may audit the supplier's records once per calendar year on ten days notice.",
    "renewal": "The term renews automatically for one-year periods unless either party objects in writing.",
}
QUESTIONS = ("How does {} work in this contract?", "What does the contract say about {}?", "Explain the {} clause.",
             "Is there a {} provision?", "{} terms?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="Use a tiny random-init model (fast, meaningless vectors).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = None
        if args.tiny:
            from deepseek_rag.testing import build_tiny_model

            words = [q.format(topic) + " " + text for topic, text in CLAUSES.items() for q in QUESTIONS]
            model = str(build_tiny_model(tmp / "tiny-model", words))
        # 1. ~50 pairs in the JSONL format `deepseek-rag finetune --pairs` reads
        pairs = [TrainingPair(q.format(topic), text) for topic, text in CLAUSES.items() for q in QUESTIONS]
        pairs_file = write_jsonl_pairs(pairs, tmp / "pairs.jsonl")
        print(f"wrote {len(pairs)} pairs to {pairs_file.name}")

        # 2. one epoch of LoRA (the same as: deepseek-rag finetune --pairs pairs.jsonl --out adapter --epochs 1)
        config = FinetuneConfig(model=model, epochs=1, batch_size=16, lr=2e-4, lora_r=8, dev_fraction=0.2, progress=False, mlflow=False)
        result = finetune(pairs, tmp / "adapter", config)
        print(f"trained {result.steps} steps; dev nDCG@10 {result.dev_before.get('ndcg@10')} → {result.dev_after.get('ndcg@10')}")

        # 3. index with the adapter and search
        encoder = DualEncoder(model=model, adapter=str(tmp / "adapter"))
        documents = [Document(id=topic, text=text) for topic, text in CLAUSES.items()]
        index = DocumentIndex.build(documents, encoder)
        for hit in index.as_retriever(top_k=2).retrieve("Can we end the contract early?"):
            print(f"{hit.doc_id:>15}  {hit.score:.3f}  {hit.text}")


if __name__ == "__main__":
    main()

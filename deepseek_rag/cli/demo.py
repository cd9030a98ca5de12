"""The main job of ``make demo``: index real legal documents every install has, then answer questions.

The documents are the licence texts that installed Python distributions ship in their ``*.dist-info``
folders (Apache-2.0, BSD, MIT, PSF, MPL... with their numbered sections), so the demo runs offline on
the bundled all-MiniLM-L6-v2 with nothing to download.

    python -m deepseek_rag.demo [--out DIR] [--max-documents N]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import sysconfig
import time
from pathlib import Path

from ..documents import Document

logger = logging.getLogger(__name__)

QUESTIONS = (
    "Is the software provided with any warranty?",
    "What happens to my patent licence if I sue a contributor for patent infringement?",
    "May I use the names of the copyright holders to endorse my product?",
    "What must I keep when I redistribute the software in binary form?",
)
_LICENCE_NAMES = ("license", "licence", "copying", "notice")


def find_licence_documents(site_packages: Path | None = None, *, max_documents: int = 40, max_chars: int = 120_000) -> list[Document]:
    """Distinct licence texts from ``*.dist-info`` folders, longest first, one per distinct text."""
    root = site_packages or Path(sysconfig.get_paths()["purelib"])
    seen: set[str] = set()
    found: list[Document] = []
    for path in sorted(root.glob("*.dist-info/**/*")):
        if not path.is_file() or not path.name.lower().startswith(_LICENCE_NAMES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        digest = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
        if len(text.strip()) < 500 or digest in seen:
            continue
        seen.add(digest)
        if len(text) > 40_000:
            continue  # concatenations of many third-party notices, not one licence
        relative = path.relative_to(root)
        distribution = relative.parts[0].removesuffix(".dist-info")
        doc_id = "/".join((distribution, *relative.parts[1:]))
        found.append(Document(doc_id, text, {"title": f"{path.name} of {distribution}", "source": str(path)}))
    found.sort(key=lambda d: len(d.text), reverse=True)
    chosen, total = [], 0
    for doc in found:  # the longest licences first (Apache, MPL, PSF), within a size a demo can wait for
        if len(chosen) < max_documents and total + len(doc.text) <= max_chars:
            chosen.append(doc)
            total += len(doc.text)
    return sorted(chosen, key=lambda d: d.id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-index", help="Index directory to write (default: demo-index).")
    parser.add_argument("--max-documents", type=int, default=30, help="Licence texts to index (default: 30).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    from ..document_index import DocumentIndex

    documents = find_licence_documents(max_documents=args.max_documents)
    if not documents:
        print("no licence texts found in this environment's site-packages", file=sys.stderr)
        return 1
    chars = sum(len(d.text) for d in documents)
    print(f"Indexing {len(documents)} licence texts ({chars:,} characters) from installed packages...")
    started = time.perf_counter()
    index = DocumentIndex.build(documents)
    index.save(args.out, overwrite=True)
    info = index.info()
    print(f"  {info['chunks']} chunks, index {info['index_spec']}, built in {time.perf_counter() - started:.1f}s → {args.out}/")

    retriever = index.as_retriever(top_k=2)
    for question in QUESTIONS:
        print(f"\nQ: {question}")
        for hit in retriever.retrieve(question):
            passage = " ".join(hit.text.split())
            print(f"  [{hit.score:.3f}] {hit.doc_id}  chars {hit.start}-{hit.end}")
            print(f"      {passage[:240]}{'...' if len(passage) > 240 else ''}")

    # The generation step: DeepSeek's API when DEEPSEEK_API_KEY is set, an OpenAI-compatible server when
    # DEEPSEEK_RAG_LLM_BASE_URL is, otherwise an offline extractive answer with its sources.
    from ..generation import answer

    question = QUESTIONS[0]
    print(f"\n$ deepseek-rag ask {args.out} {question!r}")
    result = answer(index, question, top_k=3)
    print(result.text)
    print("Sources:")
    for rank, source in enumerate(result.sources, 1):
        print(f"  {rank}. {source.doc_id}:{source.start}-{source.end}  score={source.score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

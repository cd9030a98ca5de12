"""``deepseek-rag demo``, the main job of ``make demo``: index real legal documents every install has, then answer.

The documents are the licence texts that installed Python distributions ship in their ``*.dist-info``
folders (Apache-2.0, BSD, MIT, PSF, MPL... with their numbered sections), so the demo runs offline on
the bundled all-MiniLM-L6-v2 with nothing to download.

    deepseek-rag demo [--out DIR] [--max-documents N]
"""

from __future__ import annotations

import hashlib
import logging
import sysconfig
import time
from pathlib import Path

import click

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


@click.command("demo")
@click.option("--out", default="demo-index", show_default=True, type=click.Path(file_okay=False),
              help="Index directory to write.")
@click.option("--max-documents", type=click.IntRange(1), default=30, show_default=True, help="Licence texts to index.")
def demo_command(out: str, max_documents: int) -> None:
    """Index the licence texts of the installed packages and answer questions about them, offline.

    \b
    Example:
      deepseek-rag demo --out demo-index
    """
    from ..document_index import DocumentIndex

    documents = find_licence_documents(max_documents=max_documents)
    if not documents:
        raise click.ClickException("no licence texts found in this environment's site-packages")
    chars = sum(len(d.text) for d in documents)
    click.echo(f"Indexing {len(documents)} licence texts ({chars:,} characters) from installed packages...")
    started = time.perf_counter()
    index = DocumentIndex.build(documents)
    index.save(out, overwrite=True)
    info = index.info()
    click.echo(f"  {info['chunks']} chunks, index {info['index_spec']}, built in {time.perf_counter() - started:.1f}s → {out}/")

    retriever = index.as_retriever(top_k=2)
    for question in QUESTIONS:
        click.echo(f"\nQ: {question}")
        for hit in retriever.retrieve(question):
            passage = " ".join(hit.text.split())
            click.echo(f"  [{hit.score:.3f}] {hit.doc_id}  chars {hit.start}-{hit.end}")
            click.echo(f"      {passage[:240]}{'...' if len(passage) > 240 else ''}")

    # The generation step: DeepSeek's API when DEEPSEEK_API_KEY is set, an OpenAI-compatible server when
    # DEEPSEEK_RAG_LLM_BASE_URL is, otherwise an offline extractive answer with its sources.
    from ..generation import answer

    question = QUESTIONS[0]
    click.echo(f"\n$ deepseek-rag ask {out} {question!r}")
    result = answer(index, question, top_k=3)
    click.echo(result.text)
    click.echo("Sources:")
    for rank, source in enumerate(result.sources, 1):
        click.echo(f"  {rank}. {source.doc_id}:{source.start}-{source.end}  score={source.score:.3f}")

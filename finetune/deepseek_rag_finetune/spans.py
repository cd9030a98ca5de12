"""Training pairs from span-labelled long documents: (question, the chunk holding its answer) + same-document negatives.

Input is a BEIR folder with character spans (CUAD's layout): ``corpus.jsonl``, ``queries.jsonl`` and
``qrels/<split>_spans.jsonl`` rows ``{"query-id", "corpus-id", "start", "end"}`` — offsets are Python ``str``
indices into the document's ``text``. Every document is cut exactly as :class:`deepseek_rag.DocumentIndex`
cuts it (the core's chunker, the index settings, the encoder's tokenizer), and each positive is the text the
index *embeds* for its chunk (contextual header included), so training sees the units retrieval returns.

* positives: every chunk that overlaps an answer span of the question (one pair per chunk);
* negatives: chunks of the same document that overlap no answer span of that question, the hardest first by
  the base encoder or BM25 (``mining.rank_passages``) — the "right contract, wrong clause" mistakes;
* the split: documents :func:`deepseek_rag.evaluation.held_out` picks never give a pair (unless asked), so
  ``benchmarks/cuad_spans.py --split heldout`` measures contracts the adapter never saw.

Bad rows (a span outside its document, an unknown id, an empty question) raise
:class:`deepseek_rag.InvalidInputError` naming the file and line. This module does not train.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek_rag.documents import Document
from deepseek_rag.errors import InvalidInputError
from deepseek_rag.evaluation import held_out

from .pairs import TrainingPair, jsonl_rows

logger = logging.getLogger(__name__)

Span = tuple[str, int, int]  # (document id, start, end): half-open character interval


@dataclass
class SpanLabels:
    """Documents, questions, and each question's answer spans (query id → spans)."""

    documents: dict[str, Document]
    queries: dict[str, str]
    spans: dict[str, list[Span]]

    def without_held_out(self, share: float | None = None) -> SpanLabels:
        """Only the questions whose answers all lie in documents :func:`held_out` does not pick (and those documents)."""
        kwargs = {} if share is None else {"share": share}
        spans = {q: s for q, s in self.spans.items() if not any(held_out(doc, **kwargs) for doc, _, _ in s)}
        used = {doc for s in spans.values() for doc, _, _ in s}
        return SpanLabels({d: v for d, v in self.documents.items() if d in used},
                          {q: t for q, t in self.queries.items() if q in spans}, spans)


def read_span_labels(folder: str | Path, split: str = "test") -> SpanLabels:
    """Read a BEIR-with-spans folder; every span row is checked against its document and question."""
    from deepseek_rag.ingest.loaders import load_beir_corpus

    folder = Path(folder)
    spans_path = folder / "qrels" / f"{split}_spans.jsonl"
    if not spans_path.is_file():
        found = sorted(p.name[: -len("_spans.jsonl")] for p in (folder / "qrels").glob("*_spans.jsonl")) \
            if (folder / "qrels").is_dir() else []
        hint = f"; span splits here: {', '.join(found)} (pass --split {found[0]})" if found else \
            "; a span-labelled folder holds qrels/<split>_spans.jsonl rows {query-id, corpus-id, start, end}"
        raise InvalidInputError(f"{spans_path} not found{hint}")
    documents = {doc.id: doc for doc in load_beir_corpus(folder)}
    queries, query_line = _read_queries(folder / "queries.jsonl")
    spans: dict[str, list[Span]] = {}
    for number, row in jsonl_rows(spans_path):
        where = f"{spans_path} line {number}"
        qid, doc_id, start, end = _span_row(row, where)
        if qid not in queries:
            raise InvalidInputError(f"{where}: query-id {qid!r} is not in queries.jsonl")
        if not queries[qid].strip():
            raise InvalidInputError(f"{where}: query {qid!r} has an empty question "
                                    f"(queries.jsonl line {query_line[qid]}); give it its text or drop its spans")
        document = documents.get(doc_id)
        if document is None:
            raise InvalidInputError(f"{where}: corpus-id {doc_id!r} is not in corpus.jsonl")
        if not 0 <= start < end <= len(document.text):
            raise InvalidInputError(
                f"{where}: span [{start}, {end}) lies outside document {doc_id!r} ({len(document.text)} characters); "
                "start and end are character offsets into its text with 0 <= start < end <= its length"
            )
        spans.setdefault(qid, []).append((doc_id, start, end))
    if not spans:
        raise InvalidInputError(f"{spans_path} holds no spans")
    used = {doc for s in spans.values() for doc, _, _ in s}
    return SpanLabels({d: v for d, v in documents.items() if d in used}, {q: queries[q].strip() for q in spans}, spans)


def _read_queries(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    if not path.is_file():
        raise InvalidInputError(f"{path} not found: a span-labelled folder needs queries.jsonl rows {{_id, text}}")
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, row in jsonl_rows(path):
        if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text", ""), str):
            raise InvalidInputError(f"{path} line {number}: expected an object with '_id' and a string 'text'")
        queries[str(row["_id"])] = row.get("text", "")
        lines[str(row["_id"])] = number
    return queries, lines


def _span_row(row: Any, where: str) -> tuple[str, str, int, int]:
    if not isinstance(row, dict) or any(k not in row for k in ("query-id", "corpus-id", "start", "end")):
        raise InvalidInputError(f"{where}: expected an object with 'query-id', 'corpus-id', 'start' and 'end'")
    start, end = row["start"], row["end"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise InvalidInputError(f"{where}: 'start' and 'end' must be integer character offsets, got {start!r} and {end!r}")
    return str(row["query-id"]), str(row["corpus-id"]), start, end


@dataclass
class DocumentChunks:
    """One document as the index cuts it: each chunk's (start, end) and the text the encoder embeds for it."""

    spans: list[tuple[int, int]]
    texts: list[str]


def chunk_like_index(document: Document, encoder: Any, settings: Any = None) -> DocumentChunks:
    """Cut ``document`` as ``DocumentIndex`` does with ``settings`` (an ``IndexSettings``; None: the defaults)."""
    from deepseek_rag.ingest.preparation import chunk_for_encoder, with_header
    from deepseek_rag.settings import IndexSettings

    settings = settings or IndexSettings()
    chunks = chunk_for_encoder(document, encoder, settings.chunking, settings.contextual_headers)
    return DocumentChunks([(c.start, c.end) for c in chunks],
                          [with_header(c.text, document.title, c.section, settings.contextual_headers) for c in chunks])


def span_pairs(labels: SpanLabels, encoder: Any, settings: Any = None, *, negatives: int = 0,
               mining: str = "bm25") -> list[TrainingPair]:
    """(question, answer chunk) pairs with up to ``negatives`` same-document chunks that hold no answer.

    ``encoder``: the :class:`deepseek_rag.DualEncoder` the index uses (its tokenizer cuts the chunks; with
    ``mining="dense"`` it also ranks the negatives); ``settings``: the index's ``IndexSettings`` (None: the
    defaults). Negatives are the chunks the mining method ranks highest for the question among those
    overlapping none of its answer spans. Apply :meth:`SpanLabels.without_held_out` first to keep the
    evaluation split out.
    """
    from .mining import encoder_encode, rank_passages

    if negatives < 0:
        raise InvalidInputError(f"negatives={negatives} must be non-negative")
    encode = encoder_encode(encoder) if mining == "dense" else None
    questions_of: dict[str, list[str]] = {}
    for qid, spans in labels.spans.items():
        for doc_id in dict.fromkeys(doc for doc, _, _ in spans):
            questions_of.setdefault(doc_id, []).append(qid)
    pairs: list[TrainingPair] = []
    no_chunk = 0
    for doc_id, qids in questions_of.items():
        chunks = chunk_like_index(labels.documents[doc_id], encoder, settings)
        answer_chunks = {qid: {i for i, (s, e) in enumerate(chunks.spans)
                               if any(d == doc_id and s < ae and e > as_ for d, as_, ae in labels.spans[qid])}
                         for qid in qids}
        ranked = {}
        if negatives:
            texts = list(dict.fromkeys(labels.queries[q] for q in qids))
            ranked = rank_passages(texts, chunks.texts, method=mining, encode=encode)
        for qid in qids:
            question, answers = labels.queries[qid], answer_chunks[qid]
            if not answers:  # a span inside no chunk's text (between chunks, e.g. only whitespace)
                no_chunk += 1
                continue
            positives = {chunks.texts[i] for i in answers}
            hard: list[str] = []
            for i, _ in ranked.get(question, []):
                if len(hard) >= negatives:
                    break
                text = chunks.texts[i]
                if i not in answers and text not in positives and text not in hard:
                    hard.append(text)
            pairs.extend(TrainingPair(question, chunks.texts[i], list(hard)) for i in sorted(answers))
    if no_chunk:
        logger.warning("%d questions have answer spans that no chunk overlaps; skipped", no_chunk)
    return pairs

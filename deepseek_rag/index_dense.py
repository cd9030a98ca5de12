"""Whether an index has a dense side: ``dense="auto"`` deciding on the first batch, and :meth:`DenseSide.densify`
giving a lexical-only index its vectors later.

An encoder that cannot read most of a text's tokens (the bundled English MiniLM on Chinese) makes vectors that
say little, so such an index keeps its BM25 side only until an encoder that reads it is given. :class:`DenseSide`
holds these methods of :class:`~deepseek_rag.document_index.DocumentIndex`; the index's state and its writes are
``document_index.py``'s, the re-embedding itself ``storage/rebuild.py``'s.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .documents import Chunk
from .encoding.coverage import token_coverage
from .encoding.dual_encoder import DualEncoder
from .errors import InvalidInputError
from .storage import rebuild

logger = logging.getLogger(__name__)


class DenseSide:
    """``dense="auto"`` and ``densify`` for :class:`~deepseek_rag.document_index.DocumentIndex`."""

    def _decide_dense(self, texts: list[str]) -> None:
        """``dense="auto"``: embed unless the encoder cannot read most of a sample of the first batch's tokens."""
        with self._mutex:
            if self.settings.dense != "auto":
                return
            if self._snapshot.counts()[1]:  # chunks already there: they decided
                decision = "on" if self._snapshot.dense else "off"
            else:
                coverage = token_coverage(self.encoder.tokenizer, texts)
                name = Path(self.encoder.model_name).name
                if coverage.readable or not self.settings.sparse.enabled:
                    decision = "on"
                    if not coverage.readable:
                        self.dense_note = f"{coverage.describe(name)}; embedding anyway: the index has no BM25 side"
                else:
                    decision = "off"
                    self.dense_note = (f"{coverage.describe(name)}; building the BM25 side only (a lexical-only index, "
                                       "searched in sparse mode); `deepseek-rag densify DIR --model MODEL` adds vectors "
                                       "later from an encoder that reads this text")
                if self.dense_note:
                    logger.info(self.dense_note)
            self.settings = dataclasses.replace(self.settings, dense=decision)
            self._snapshot = self._snapshot.derive(self._snapshot.states, dense=decision == "on")

    def densify(self, encoder: DualEncoder, *, index_spec: str = "auto", force: bool = False,
                progress: bool | None = None) -> int:
        """Give a lexical-only index its vector side: every live chunk embedded by ``encoder``, which the index
        records as its encoder from then on (queries and later adds use it). Returns the chunks embedded; call
        :meth:`save` to publish (atomically: readers see the lexical-only version until then).

        Refused when the index has vectors already (rebuilding is how an index changes encoder), and, unless
        ``force``, when ``encoder`` cannot read most of a sample of the chunks either. Chunks were cut for the
        encoder that built the index; ones longer than ``encoder`` reads are embedded from their start (a warning
        says how many; the BM25 side keeps all of their text).
        """
        self._check_writable()
        if self._snapshot.dense:
            raise InvalidInputError(
                f"this index has a dense side already (encoder {Path(self.encoder.model_name).name}, "
                f"{self._snapshot.spec}); an index changes encoder by being rebuilt: `deepseek-rag index ... --model M`"
            )
        with self._writing():
            texts = [self.embedding_text(c, _title(c)) for batch in self._snapshot.iter_chunks() for c in batch]
            name = Path(encoder.model_name).name
            coverage = token_coverage(encoder.tokenizer, texts)
            if not coverage.readable and not force:
                raise InvalidInputError(f"{coverage.describe(name)}: its vectors would say little about this text; "
                                        "choose an encoder that reads it, or pass force=True (--force) to embed anyway")
            limit = encoder.max_seq_length - encoder.tokenizer.num_special_tokens_to_add() - encoder.document_prefix_tokens
            long = sum(len(ids) > limit for ids in encoder.tokenizer(texts, add_special_tokens=False)["input_ids"]) \
                if texts else 0
            notes = [coverage.describe(name)]
            if long:
                notes.append(f"{long} of {len(texts)} chunks are longer than the {limit} tokens {name} reads: only their "
                             "start is embedded (rebuild with --model to cut chunks for it)")
                logger.warning(notes[-1])
            self.dense_note = "; ".join(notes)
            snapshot = rebuild.with_dense(
                self._snapshot, lambda batch, shown: encoder.encode_documents(batch, progress=shown), index_spec,
                encoder.dim, embedding_text=lambda chunk: self.embedding_text(chunk, _title(chunk)), progress=progress,
            )
            self.encoder = encoder
            self.settings = dataclasses.replace(self.settings, dense="on", index_spec=index_spec)
            self._swap(snapshot)
        return len(texts)


def _title(chunk: Chunk) -> str | None:
    """The document title a chunk's header names (its document's ``metadata["title"]``)."""
    title = chunk.metadata.get("title")
    return str(title) if title else None

"""DeepSeekRAGRetriever: a deepseek-rag index behind LlamaIndex's ``BaseRetriever``.

Hits come back as ``NodeWithScore(TextNode)``: stable node ids (``"{doc_id}::{ordinal}"`` for chunks, the
document id itself at document level), character offsets into the source document, the document's metadata
plus ``doc_id``/``section``, and ``SOURCE`` / ``PREVIOUS`` / ``NEXT`` relationships. Scores are inner
products of unit vectors: higher is better.

Chunking, encoding and searching stay in ``deepseek_rag``; this module only translates between the two
libraries (documents in, filters in, nodes out) and saves the retriever's own settings beside the index.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepseek_rag import DocumentIndex, DualEncoder, EncoderConfig, Filter, IndexSettings
from deepseek_rag import Document as CoreDocument
from deepseek_rag.retrieval.retriever import DocumentHit, Hit, Retriever
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.schema import (
    BaseNode,
    IndexNode,
    NodeRelationship,
    NodeWithScore,
    ObjectType,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

logger = logging.getLogger(__name__)

DEFAULT_SIMILARITY_TOP_K = 10
DEFAULT_PERSIST_FILENAME = "retriever.json"
PERSIST_FORMAT_VERSION = 1
NODE_ID_SEPARATOR = "::"


def chunk_node_id(doc_id: str, ordinal: int) -> str:
    """The node id of a document's ``ordinal``-th chunk: the same after persist/reload and re-indexing."""
    return f"{doc_id}{NODE_ID_SEPARATOR}{ordinal}"


class DeepSeekRAGRetriever(BaseRetriever):
    """Chunked long-document retrieval (dual encoder + FAISS + SQLite) as a LlamaIndex retriever.

    Args:
        index: a ``deepseek_rag.DocumentIndex`` (build one with :meth:`from_defaults`).
        similarity_top_k: nodes returned per query.
        level: ``"chunk"`` (one node per chunk) or ``"document"`` (one node per document: its best chunk,
            node id = document id).
        expand_neighbors: widen every hit to its ``n`` neighbouring chunks on each side.
        filters: LlamaIndex ``MetadataFilters`` (every operator and condition, nested groups included; see
            :func:`metadata_filters_to_dict`) or a deepseek-rag filter expression (``{"price": {"$lte": 120}}``);
            the key ``doc_id`` filters on document id.
        aggregation: how chunk scores make a document score at document level (``max``, ``softmax``, ``topk_sum``).
        nprobe: IVF lists searched per query (None: the index's default).
        mode: ``"dense"``, ``"sparse"`` or ``"hybrid"`` search where the core supports it (None: its default).
        focus_documents: at chunk level, two-stage ranking for questions about one long document among many:
            ``"auto"`` (default) ranks inside the document the query names when it can fill the answer, else
            ranks plainly; ``n`` always returns chunks of the best ``n`` documents only; ``0`` is off. See
            ``deepseek_rag.Retriever``.
        window_tokens: at chunk level, grow every node to a window of about ``n`` encoder tokens around the
            matched chunk (precise passages: small chunks matched, a bounded window returned, offsets exact);
            None (default) returns chunks as indexed. Not with ``expand_neighbors``.
    """

    def __init__(
        self,
        index: DocumentIndex,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        level: str = "chunk",
        expand_neighbors: int = 0,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        aggregation: str = "max",
        nprobe: int | None = None,
        mode: str | None = None,
        focus_documents: int | str = "auto",
        window_tokens: int | None = None,
        callback_manager: CallbackManager | None = None,
        objects: list[IndexNode] | None = None,
        object_map: dict | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(index, DocumentIndex):
            raise TypeError(
                f"index must be a deepseek_rag.DocumentIndex, got {type(index).__name__}; "
                "use DeepSeekRAGRetriever.from_defaults(documents=... | nodes=... | index_dir=...)"
            )
        self._index = index
        self.filters = metadata_filters_to_dict(filters)
        # The core validates top_k, level, aggregation and expand_neighbors with messages naming the value.
        self._retriever = Retriever(
            index,
            top_k=similarity_top_k,
            level=level,
            aggregation=aggregation,
            expand_neighbors=expand_neighbors,
            nprobe=nprobe,
            filters=self.filters,
            focus_documents=focus_documents,
            window_tokens=window_tokens,
            **({"mode": mode} if mode is not None else {}),
        )
        self.focus_documents = self._retriever.focus_documents
        self.window_tokens = self._retriever.window_tokens
        self.similarity_top_k = similarity_top_k
        self.level = level
        self.expand_neighbors = expand_neighbors
        self.aggregation = aggregation
        self.nprobe = nprobe
        self.mode = mode
        super().__init__(callback_manager=callback_manager, object_map=object_map, objects=objects, verbose=verbose)

    # ------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_defaults(
        cls,
        documents: Sequence[Any] | None = None,
        nodes: Sequence[BaseNode] | None = None,
        index_dir: str | os.PathLike | None = None,
        index: DocumentIndex | None = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        encoder: DualEncoder | None = None,
        model: str | None = None,
        index_spec: str = "auto",
        level: str = "chunk",
        expand_neighbors: int = 0,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        aggregation: str = "max",
        chunking: Any = None,
        contextual_headers: bool = True,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> DeepSeekRAGRetriever:
        """Build an index from LlamaIndex ``documents`` or ``nodes``, or open ``index_dir`` / wrap ``index``.

        Documents keep their ``doc_id`` and metadata. Nodes are indexed one document per node, keyed by the
        node id (their own ``ref_doc_id`` is kept as metadata ``ref_doc_id``), so at ``level="document"``
        the returned node ids are the ids of the nodes you passed. ``model`` is a local transformers /
        sentence-transformers folder (default: the bundled all-MiniLM-L6-v2); ``chunking`` a
        ``deepseek_rag.ChunkingConfig`` (or its dict).
        """
        given = [name for name, value in (("documents", documents), ("nodes", nodes), ("index_dir", index_dir),
                                          ("index", index)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"pass exactly one of documents=, nodes=, index_dir= or index= (got {', '.join(given) or 'none'})"
            )
        encoder = _resolve_encoder(encoder, model)
        if index_dir is not None:
            index = DocumentIndex.load(index_dir, encoder)
        elif index is None:
            core_documents = documents_from_llama_index(documents) if documents is not None else documents_from_nodes(nodes)
            settings = IndexSettings(index_spec=index_spec, contextual_headers=contextual_headers,
                                     **({"chunking": chunking} if chunking is not None else {}))
            index = DocumentIndex.build(core_documents, encoder, settings, progress=progress)
        return cls(
            index,
            similarity_top_k=similarity_top_k,
            level=level,
            expand_neighbors=expand_neighbors,
            filters=filters,
            aggregation=aggregation,
            **kwargs,
        )

    def get_persist_args(self) -> dict[str, Any]:
        """The retriever's own settings, saved as ``retriever.json`` beside the index files."""
        return {
            "format_version": PERSIST_FORMAT_VERSION,
            "similarity_top_k": self.similarity_top_k,
            "level": self.level,
            "expand_neighbors": self.expand_neighbors,
            "aggregation": self.aggregation,
            "nprobe": self.nprobe,
            "mode": self.mode,
            "filters": self.filters,
            # written only when not the default, so files stay readable by adapters that predate "auto"
            **({"focus_documents": self.focus_documents} if self.focus_documents != "auto" else {}),
            **({"window_tokens": self.window_tokens} if self.window_tokens else {}),
        }

    def persist(self, path: str | os.PathLike, *, overwrite: bool = False, encoding: str = "utf-8") -> None:
        """Save the index directory (atomically, see ``DocumentIndex.save``) plus ``retriever.json``.

        The folder is also a plain deepseek-rag index: ``deepseek-rag query``/``DocumentIndex.load`` open it.
        """
        target = Path(path)
        self._index.save(target, overwrite=overwrite)
        staging = target / (DEFAULT_PERSIST_FILENAME + ".tmp")
        staging.write_text(json.dumps(self.get_persist_args(), indent=2, ensure_ascii=False), encoding=encoding)
        os.replace(staging, target / DEFAULT_PERSIST_FILENAME)

    @classmethod
    def from_persist_dir(
        cls,
        path: str | os.PathLike,
        encoder: DualEncoder | None = None,
        model: str | None = None,
        encoding: str = "utf-8",
        **overrides: Any,
    ) -> DeepSeekRAGRetriever:
        """Open a folder written by :meth:`persist` (or by ``deepseek-rag index``: default settings then)."""
        folder = Path(path)
        saved: dict[str, Any] = {}
        settings_file = folder / DEFAULT_PERSIST_FILENAME
        if settings_file.is_file():
            saved = json.loads(settings_file.read_text(encoding=encoding))
            version = saved.pop("format_version", None)
            if version != PERSIST_FORMAT_VERSION:
                raise ValueError(
                    f"{settings_file} has format_version {version!r}; this adapter reads {PERSIST_FORMAT_VERSION}. "
                    "Upgrade llama-index-retrievers-deepseek-rag, or delete the file to use default settings."
                )
        index = DocumentIndex.load(folder, _resolve_encoder(encoder, model))
        return cls(index, **{**saved, **overrides})

    # ------------------------------------------------------------------------------------ properties
    @property
    def index(self) -> DocumentIndex:
        """The deepseek-rag index searched (add, upsert or delete documents through it)."""
        return self._index

    @property
    def core_retriever(self) -> Retriever:
        """The ``deepseek_rag.Retriever`` doing the search, for callers who want ``Hit`` objects."""
        return self._retriever

    # ------------------------------------------------------------------------------------ retrieval
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        if self.level == "document":
            return [self._document_node(doc) for doc in self._retriever.retrieve_documents(query)]
        return [NodeWithScore(node=self._chunk_node(hit), score=hit.score) for hit in self._retriever.retrieve(query)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Encoding and FAISS search are CPU/GPU-bound and release the GIL: run them in a worker thread so
        # the event loop keeps serving other requests meanwhile.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _chunk_node(self, hit: Hit) -> TextNode:
        relationships = {NodeRelationship.SOURCE: _document_ref(hit.doc_id)}
        if hit.ordinal > 0:
            relationships[NodeRelationship.PREVIOUS] = _chunk_ref(hit.doc_id, hit.ordinal - 1)
        if self._index.store.chunks_of(hit.doc_id, hit.ordinal + 1, hit.ordinal + 1):
            relationships[NodeRelationship.NEXT] = _chunk_ref(hit.doc_id, hit.ordinal + 1)
        return _text_node(chunk_node_id(hit.doc_id, hit.ordinal), hit, relationships)

    def _document_node(self, doc: DocumentHit) -> NodeWithScore:
        node = _text_node(doc.doc_id, doc.hits[0], {NodeRelationship.SOURCE: _document_ref(doc.doc_id)})
        return NodeWithScore(node=node, score=doc.score)


# ---------------------------------------------------------------------------------------- nodes out
def _text_node(node_id: str, hit: Hit, relationships: dict[NodeRelationship, RelatedNodeInfo]) -> TextNode:
    metadata = {**hit.metadata, "doc_id": hit.doc_id}
    if hit.section:
        metadata["section"] = hit.section
    return TextNode(
        id_=node_id,
        text=hit.text,
        metadata=metadata,
        start_char_idx=hit.start,
        end_char_idx=hit.end,
        relationships=relationships,
    )


def _document_ref(doc_id: str) -> RelatedNodeInfo:
    return RelatedNodeInfo(node_id=doc_id, node_type=ObjectType.DOCUMENT)


def _chunk_ref(doc_id: str, ordinal: int) -> RelatedNodeInfo:
    return RelatedNodeInfo(node_id=chunk_node_id(doc_id, ordinal), node_type=ObjectType.TEXT)


# ---------------------------------------------------------------------------------------- documents in
def documents_from_llama_index(documents: Iterable[Any]) -> list[CoreDocument]:
    """LlamaIndex ``Document``s (or deepseek-rag ones, passed through) as deepseek-rag documents: same id, text, metadata."""
    converted = []
    for doc in documents:
        if isinstance(doc, CoreDocument):
            converted.append(doc)
        elif isinstance(doc, BaseNode):
            converted.append(CoreDocument(id=doc.node_id, text=_node_text(doc), metadata=dict(doc.metadata)))
        else:
            raise TypeError(f"expected LlamaIndex Documents, got {type(doc).__name__}")
    return converted


def documents_from_nodes(nodes: Iterable[BaseNode]) -> list[CoreDocument]:
    """One deepseek-rag document per node, keyed by the node id; the node's source id is kept as ``ref_doc_id``."""
    converted = []
    for node in nodes:
        if not isinstance(node, BaseNode):
            raise TypeError(f"expected LlamaIndex nodes, got {type(node).__name__}")
        metadata = dict(node.metadata)
        if node.ref_doc_id and node.ref_doc_id != node.node_id:
            metadata["ref_doc_id"] = node.ref_doc_id
        converted.append(CoreDocument(id=node.node_id, text=_node_text(node), metadata=metadata))
    return converted


def _node_text(node: BaseNode) -> str:
    text = getattr(node, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"node {node.node_id!r} ({type(node).__name__}) has no text to index")
    return text


def _resolve_encoder(encoder: DualEncoder | None, model: str | None) -> DualEncoder | None:
    if encoder is not None and model is not None:
        raise ValueError("pass encoder= or model=, not both")
    if model is not None:
        return DualEncoder(EncoderConfig(model=str(model)))
    return encoder


# ---------------------------------------------------------------------------------------- filters in
_OPERATORS = {
    FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt", FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte", FilterOperator.IN: "$in", FilterOperator.NIN: "$nin",
    FilterOperator.TEXT_MATCH: "$contains", FilterOperator.CONTAINS: "$contains",
}


def metadata_filters_to_dict(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any]:
    """Translate LlamaIndex ``MetadataFilters`` into deepseek-rag's filter expression (``vectors/filters.py``).

    Every operator maps: ``==`` ``!=`` ``>`` ``>=`` ``<`` ``<=`` ``in`` ``nin``; ``text_match`` (substring of a
    string value) and ``contains`` (an item of a list value, or a substring) become ``$contains``; ``any`` /
    ``all`` (a list value holding any / all of the given items) become ``$or`` / ``$and`` of ``$contains``;
    ``is_empty`` becomes ``$exists: false``. Conditions ``and``, ``or`` and ``not`` nest, with nested
    ``MetadataFilters`` as their operands. ``text_match_insensitive`` has no equivalent and is refused clearly.
    A plain dict is taken as a deepseek-rag filter expression already. The result is checked by ``Filter.parse``.
    """
    if filters is None:
        return {}
    if isinstance(filters, Mapping):
        expression = {str(key): list(value) if isinstance(value, (list, tuple, set)) else value for key, value in filters.items()}
    elif isinstance(filters, MetadataFilters):
        expression = _translate(filters) if filters.filters else {}
    else:
        raise TypeError(f"filters must be llama_index MetadataFilters or a dict, got {type(filters).__name__}")
    Filter.parse(expression)  # a bad value or operator is an error here, naming it, not at the first query
    return expression


def _translate(filters: MetadataFilters) -> dict[str, Any]:
    parts = [_translate(f) if isinstance(f, MetadataFilters) else _translate_one(f) for f in filters.filters]
    if not parts:
        raise ValueError("an empty MetadataFilters group matches nothing to combine; drop it or add filters")
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$and": parts}}
    if len(parts) == 1:
        return parts[0]
    return {"$or" if condition == FilterCondition.OR else "$and": parts}


def _translate_one(flt: MetadataFilter) -> dict[str, Any]:
    operator = flt.operator
    if operator == FilterOperator.IS_EMPTY:
        return {flt.key: {"$exists": False}}
    if operator in (FilterOperator.ANY, FilterOperator.ALL):
        values = flt.value if isinstance(flt.value, (list, tuple)) else [flt.value]
        if not values:
            raise ValueError(f"{operator.value!r} filter on {flt.key!r} needs a non-empty list of values")
        group = [{flt.key: {"$contains": v}} for v in values]
        return {"$or" if operator == FilterOperator.ANY else "$and": group} if len(group) > 1 else group[0]
    if operator not in _OPERATORS:
        raise ValueError(
            f"filter operator {operator.value!r} on {flt.key!r} is not supported by deepseek-rag (it has no "
            f"case-insensitive match); supported: {', '.join(o.value for o in (*_OPERATORS, FilterOperator.ANY, FilterOperator.ALL, FilterOperator.IS_EMPTY))}"
        )
    if operator == FilterOperator.EQ and isinstance(flt.value, (list, tuple)):
        raise ValueError(f"EQ filter on {flt.key!r} got a list {flt.value!r}; use FilterOperator.IN for 'any of'")
    if operator == FilterOperator.EQ and flt.value is None:
        raise ValueError(f"EQ filter on {flt.key!r} has no value; give the value the metadata must equal")
    return {flt.key: {_OPERATORS[operator]: list(flt.value) if isinstance(flt.value, tuple) else flt.value}}

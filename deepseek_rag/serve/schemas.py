"""Request and response bodies of the HTTP API, as separate pydantic models (the OpenAPI schema comes from here).

Requests are strict about what they accept — unknown fields, a ``top_k`` out of range, a ``level`` or ``mode``
that does not exist are 422 with the field named — so a client's typo never silently changes a search.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..retrieval.windows import MAX_WINDOW_TOKENS

MAX_QUERY_CHARS = 20_000
MAX_TEXT_CHARS = 10_000_000


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrieveRequest(Request):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to search for.")
    top_k: int = Field(default=10, ge=1, le=1000, description="Hits to return.")
    level: Literal["chunk", "document"] = Field(default="chunk", description="One hit per chunk, or per document.")
    filters: dict[str, Any] | None = Field(
        default=None, description='Metadata filter, e.g. {"year": {"$gte": 2020}, "party": ["acme", "globex"]}.'
    )
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        default=None, description="Vectors, BM25 or both fused (default: hybrid when the index has a BM25 side)."
    )
    focus_documents: Literal["auto"] | Annotated[int, Field(ge=0, le=100)] = Field(
        default="auto", description="'auto': rank inside the document the query names, when it can fill top_k; "
                                    "N: rank documents first, return chunks of the best N; 0: off.")
    expand_neighbors: int = Field(default=0, ge=0, le=10, description="Neighbouring chunks added on each side.")
    window_tokens: int | None = Field(
        default=None, ge=1, le=MAX_WINDOW_TOKENS,
        description="Grow each hit to a window of about this many tokens around the matched chunk (exact offsets; "
                    "not with expand_neighbors). Default: the chunk as indexed.")
    user: str | None = Field(default=None, max_length=200, description="The caller's id (A/B routing).")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank; give some text to search for")
        return value


class RetrieveBatchRequest(Request):
    queries: list[str] = Field(min_length=1, max_length=256, description="Up to 256 queries, encoded together.")
    top_k: int = Field(default=10, ge=1, le=1000)
    level: Literal["chunk", "document"] = "chunk"
    filters: dict[str, Any] | None = None
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    focus_documents: Literal["auto"] | Annotated[int, Field(ge=0, le=100)] = "auto"
    expand_neighbors: int = Field(default=0, ge=0, le=10)
    window_tokens: int | None = Field(default=None, ge=1, le=MAX_WINDOW_TOKENS)
    user: str | None = Field(default=None, max_length=200)

    @field_validator("queries")
    @classmethod
    def _queries(cls, values: list[str]) -> list[str]:
        for i, value in enumerate(values):
            if not value.strip():
                raise ValueError(f"queries[{i}] is blank")
            if len(value) > MAX_QUERY_CHARS:
                raise ValueError(f"queries[{i}] is {len(value):,} characters; the limit is {MAX_QUERY_CHARS:,}")
        return values


class HitOut(BaseModel):
    doc_id: str
    chunk_id: int
    score: float
    start: int
    end: int
    text: str
    section: str | None = None
    ordinal: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class RetrieveResponse(BaseModel):
    hits: list[HitOut]
    index_version: int | None
    arm: str
    request_id: str


class RetrieveBatchResponse(BaseModel):
    results: list[list[HitOut]]
    index_version: int | None
    arm: str
    request_id: str


class AskRequest(Request):
    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=5, ge=1, le=100)
    stream: bool = Field(default=False, description="Server-sent events: token…, sources, done.")
    filters: dict[str, Any] | None = None
    user: str | None = Field(default=None, max_length=200)

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is blank; ask something")
        return value


class SourceOut(BaseModel):
    doc_id: str
    start: int
    end: int
    score: float
    text: str


class AskResponse(BaseModel):
    answer: str
    mode: str = Field(description="llm or extractive")
    sources: list[SourceOut]
    index_version: int | None
    arm: str
    request_id: str


class DocumentIn(Request):
    id: str = Field(min_length=1, max_length=1000)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank; a document needs some text")
        return value


class UpsertRequest(Request):
    documents: list[DocumentIn] = Field(min_length=1, description="Documents to add or replace (by id).")

    @field_validator("documents")
    @classmethod
    def _unique(cls, documents: list[DocumentIn]) -> list[DocumentIn]:
        seen: set[str] = set()
        for i, doc in enumerate(documents):
            if doc.id in seen:
                raise ValueError(f"documents[{i}].id {doc.id!r} appears twice in this batch; ids must be unique")
            seen.add(doc.id)
        return documents


class UpsertResponse(BaseModel):
    upserted: int
    chunks: int
    index_version: int | None = Field(description="The default arm's new version.")
    versions: dict[str, int | None] = Field(default_factory=dict, description="Every arm's new version.")
    request_id: str


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]
    index_version: int | None


class DeleteResponse(BaseModel):
    deleted: str
    chunks: int
    index_version: int | None
    versions: dict[str, int | None] = Field(default_factory=dict)
    request_id: str


class IndexInfo(BaseModel):
    version: int | None
    documents: int
    chunks: int
    segments: int
    index_spec: str
    encoder: dict[str, Any]
    settings: dict[str, Any]


class Health(BaseModel):
    status: str


class ErrorOut(BaseModel):
    detail: Any = Field(description="What was wrong, naming the field or value, and what to do.")


class FeedbackRequest(Request):
    request_id: str = Field(min_length=1, max_length=64, description="The request_id of the answer this is about.")
    signal: Literal["click", "helpful", "unhelpful"]
    doc_id: str | None = Field(default=None, max_length=1000, description="The document clicked, if any.")


class FeedbackResponse(BaseModel):
    recorded: bool
    arm: str


class WeightsRequest(Request):
    weights: dict[str, float] = Field(min_length=1, description='New weights by arm name, e.g. {"tuned": 50}.')


class PromoteRequest(Request):
    arm: str = Field(min_length=1, max_length=200)


class ArmsOut(BaseModel):
    default: str
    weights: dict[str, float]
    versions: dict[str, int | None]
    registered: dict[str, Any] | None = Field(default=None, description="The MLflow model version a promotion registered.")


class ExperimentReport(BaseModel):
    default: str
    min_effect: float
    rated_per_arm_needed: int
    test: str
    arms: dict[str, dict[str, Any]]

"""The writer's document encoding shares the query batcher's thread, a slice at a time (serve/batching.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from deepseek_rag import DualEncoder
from deepseek_rag.serve.batching import DocumentEncodingLane, QueryBatcher
from deepseek_rag.serve.metrics import ServeMetrics


class RecordingEncoder:
    """The tiny encoder, noting each forward pass: which side, how many texts, on which thread, when."""

    def __init__(self, encoder: DualEncoder, pause_s: float = 0.0) -> None:
        self.encoder, self.pause_s, self.calls = encoder, pause_s, []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_documents(self, texts, **kwargs):
        time.sleep(self.pause_s)  # a forward pass that takes a while, as a real one on long chunks does
        self.calls.append(("document", len(texts), threading.current_thread().name, time.perf_counter()))
        return self.encoder.encode_documents(texts, **kwargs)

    def encode_queries(self, texts, **kwargs):
        self.calls.append(("query", len(texts), threading.current_thread().name, time.perf_counter()))
        return self.encoder.encode_queries(texts, **kwargs)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(model=str(tiny_model_dir), dtype="float32")


TEXTS = [f"clause {i}: " + "the tenant repairs the roof and pays the rent " * (1 + i % 7) for i in range(40)]


def test_the_lane_gives_the_vectors_of_one_call_in_order(encoder):
    recording = RecordingEncoder(encoder)
    batcher = QueryBatcher(recording, ServeMetrics(), window_s=0.001, max_batch=8)

    async def main():
        await batcher.start()
        try:
            lane = DocumentEncodingLane(recording, batcher, slice_tokens=128)
            return await asyncio.to_thread(lane.encode_documents, TEXTS)
        finally:
            await batcher.stop()

    vectors = asyncio.run(main())
    np.testing.assert_allclose(vectors, encoder.encode_documents(TEXTS), atol=1e-5)
    slices = [c for c in recording.calls if c[0] == "document"]
    assert len(slices) > 4 and sum(n for _, n, _, _ in slices) == len(TEXTS)
    assert {thread for _, _, thread, _ in slices} == {"encode_0"}  # the batcher's thread, not the caller's
    lane = DocumentEncodingLane(recording, batcher)
    assert lane.dim == encoder.dim and lane.max_seq_length == encoder.max_seq_length  # the rest is the encoder's


def test_a_query_waits_for_one_slice_not_for_the_whole_upsert(encoder):
    recording = RecordingEncoder(encoder, pause_s=0.05)
    batcher = QueryBatcher(recording, ServeMetrics(), window_s=0.001, max_batch=8)

    async def main():
        await batcher.start()
        try:
            lane = DocumentEncodingLane(recording, batcher, slice_tokens=64)
            upsert = asyncio.create_task(asyncio.to_thread(lane.encode_documents, TEXTS))
            await asyncio.sleep(0.12)  # the upsert is a few slices in
            await batcher.encode("who repairs the roof?")
            answered = time.perf_counter()
            await upsert
            return answered
        finally:
            await batcher.stop()

    answered = asyncio.run(main())
    documents_after = [c for c in recording.calls if c[0] == "document" and c[3] > answered]
    assert len(documents_after) >= 5  # most of the upsert's slices ran after the query was answered
    query_at = next(c[3] for c in recording.calls if c[0] == "query")
    assert sum(1 for c in recording.calls if c[0] == "document" and c[3] < query_at) <= 6


def test_without_a_running_batcher_the_lane_encodes_on_the_callers_thread(encoder):
    recording = RecordingEncoder(encoder)
    lane = DocumentEncodingLane(recording, QueryBatcher(recording, ServeMetrics(), window_s=0, max_batch=1))
    assert lane.encode_documents(TEXTS[:3]).shape == (3, encoder.dim)
    assert {c[2] for c in recording.calls} == {threading.current_thread().name}

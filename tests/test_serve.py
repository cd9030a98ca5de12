"""The HTTP service against a real uvicorn server on 127.0.0.1: the API, bad input, keys, limits, metrics."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deepseek_rag import DocumentIndex
from deepseek_rag.serve import ServeSettings
from deepseek_rag.serve.metrics import METRIC_NAMES

from serve_helpers import running_server

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = [
    {"id": "lease.txt", "text": "# Repairs\nThe tenant repairs the roof. The landlord pays for the boiler.", "metadata": {"year": 2021}},
    {"id": "nda.txt", "text": "The receiving party keeps the information confidential for two years.", "metadata": {"year": 2022}},
    {"id": "law.txt", "text": "This agreement is governed by the laws of New York.", "metadata": {"year": 2023, "pages": 3}},
]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    index = tmp_path_factory.mktemp("served") / "index"  # does not exist: the server creates it empty
    settings = ServeSettings(index=str(index), model=str(tiny_model_dir), api_key=KEY, watch_s=0.1, timeout_s=20)
    with running_server(settings) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            response = client.post("/v1/documents", json={"documents": DOCS}, headers=AUTH)
            assert response.status_code == 200, response.text
        yield url, index


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def test_an_empty_directory_becomes_an_index_that_takes_upserts(client, server):
    info = client.get("/v1/index").json()
    assert info["documents"] == 3 and info["version"] == 2  # version 1: the empty index the server created
    assert DocumentIndex.load(server[1], writable=False).version == 2


def test_retrieve_returns_hits_with_their_place_in_the_source(client):
    body = client.post("/v1/retrieve", json={"query": "who repairs the roof?", "top_k": 2}).json()
    hit = body["hits"][0]
    assert hit["doc_id"] == "lease.txt" and "roof" in hit["text"]
    assert DOCS[0]["text"][hit["start"]:hit["end"]] == hit["text"] and hit["section"] == "Repairs"
    assert body["index_version"] == 2 and body["arm"] == "default" and len(body["request_id"]) == 32
    docs = client.post("/v1/retrieve", json={"query": "confidential", "level": "document", "top_k": 3}).json()["hits"]
    assert len({h["doc_id"] for h in docs}) == len(docs)
    only_2023 = client.post("/v1/retrieve", json={"query": "laws", "filters": {"year": {"$gte": 2023}}}).json()["hits"]
    assert [h["doc_id"] for h in only_2023] == ["law.txt"]
    sparse = client.post("/v1/retrieve", json={"query": "boiler", "mode": "sparse"}).json()["hits"]
    assert sparse[0]["doc_id"] == "lease.txt"
    batch = client.post("/v1/retrieve/batch", json={"queries": ["roof", "New York"], "top_k": 1, "mode": "sparse"}).json()
    assert [r[0]["doc_id"] for r in batch["results"]] == ["lease.txt", "law.txt"]


def test_documents_can_be_read_replaced_and_deleted(client):
    assert client.get("/v1/documents/nda.txt").json()["metadata"]["year"] == 2022
    replaced = client.post("/v1/documents", json={"documents": [{"id": "temp", "text": "A temporary clause."}]}, headers=AUTH)
    assert replaced.status_code == 200 and replaced.json()["upserted"] == 1
    version = replaced.json()["index_version"]
    assert client.get("/v1/documents/temp").json()["index_version"] == version  # readers moved at once
    deleted = client.delete("/v1/documents/temp", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["index_version"] == version + 1
    assert client.get("/v1/documents/temp").status_code == 404
    assert client.delete("/v1/documents/temp", headers=AUTH).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"query": "x", "top_k": 0}, "top_k"),
    ({"query": "x", "top_k": 100000}, "top_k"),
    ({"query": "x", "level": "paragraph"}, "level"),
    ({"query": "x", "mode": "fuzzy"}, "mode"),
    ({"query": "x", "filters": ["year", 2020]}, "filters"),
    ({"query": "   "}, "query"),
    ({"query": "x", "topk": 3}, "topk"),
    ({"query": "x", "focus_documents": "often"}, "focus_documents"),
    ({"query": "x", "focus_documents": -1}, "focus_documents"),
    ({}, "query"),
])
def test_bad_retrieve_requests_are_422_naming_the_field(client, body, field):
    response = client.post("/v1/retrieve", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]["message"]


def test_bad_bodies_and_filters(client):
    malformed = client.post("/v1/retrieve", content=b'{"query": "x", ', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "not valid JSON" in malformed.json()["detail"]["message"]
    bad_operator = client.post("/v1/retrieve", json={"query": "x", "filters": {"year": {"$between": [1, 2]}}})
    assert bad_operator.status_code == 422 and "$between" in bad_operator.json()["detail"]["message"]
    huge = client.post("/v1/retrieve", content=b"[" + b"1," * (17 * 1024 * 1024) + b"1]", headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]["message"]
    duplicate = client.post("/v1/documents", json={"documents": [{"id": "d", "text": "one"}, {"id": "d", "text": "two"}]},
                            headers=AUTH)
    assert duplicate.status_code == 422 and "'d' appears twice" in duplicate.json()["detail"]["message"]
    empty = client.post("/v1/documents", json={"documents": [{"id": "e", "text": "  "}]}, headers=AUTH)
    assert empty.status_code == 422 and "text" in empty.json()["detail"]["message"]


def test_writes_need_the_key(client):
    doc = {"documents": [{"id": "x", "text": "some text"}]}
    assert client.post("/v1/documents", json=doc).status_code == 401
    assert client.post("/v1/documents", json=doc, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.delete("/v1/documents/lease.txt", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/v1/documents/x").status_code == 404  # nothing was written


def test_keys_are_never_logged(client, caplog):
    import time

    with caplog.at_level(logging.INFO, logger="deepseek_rag.serve.access"):
        client.post("/v1/documents", json={"documents": [{"id": "x", "text": "t"}]}, headers={"Authorization": "Bearer wrong-key"})
        client.get("/healthz")
        for _ in range(100):  # the server thread logs right after it has sent the response
            lines = [r.getMessage() for r in caplog.records if r.name == "deepseek_rag.serve.access"]
            if any(line.startswith("GET /healthz") for line in lines):
                break
            time.sleep(0.02)
    assert any(line.startswith("POST /v1/documents 403 ") for line in lines)
    assert any(line.startswith("GET /healthz 200 ") and line.endswith("ms") for line in lines)
    assert not any("wrong-key" in line or KEY in line for line in lines)


def test_without_a_key_writes_are_refused_unless_allowed_on_loopback(tiny_model_dir, tmp_path):
    from deepseek_rag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="loopback"):
        ServeSettings(index=str(tmp_path / "i"), host="0.0.0.0", allow_unauthenticated_writes=True)
    for allow, expected in ((False, 403), (True, 200)):
        settings = ServeSettings(index=str(tmp_path / f"i{allow}"), model=str(tiny_model_dir), allow_unauthenticated_writes=allow)
        with running_server(settings) as url:
            response = httpx.post(f"{url}/v1/documents", json={"documents": [{"id": "a", "text": "text"}]}, timeout=30)
            assert response.status_code == expected, response.text


def test_reads_need_the_read_key_when_one_is_set(tiny_model_dir, tmp_path):
    settings = ServeSettings(index=str(tmp_path / "i"), model=str(tiny_model_dir), api_key=KEY, read_key="reader")
    with running_server(settings) as url:
        query = {"query": "anything"}
        assert httpx.post(f"{url}/v1/retrieve", json=query).status_code == 401
        assert httpx.post(f"{url}/v1/retrieve", json=query, headers={"Authorization": "Bearer nope"}).status_code == 403
        assert httpx.post(f"{url}/v1/retrieve", json=query, headers={"Authorization": "Bearer reader"}).status_code == 200
        assert httpx.post(f"{url}/v1/retrieve", json=query, headers=AUTH).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/metrics").status_code == 200


def test_a_request_past_the_time_limit_is_504(tiny_model_dir, tmp_path):
    # a batch window longer than the time limit: every query waits past it
    settings = ServeSettings(index=str(tmp_path / "i"), model=str(tiny_model_dir), timeout_s=0.2, batch_window_ms=1000)
    with running_server(settings) as url:
        response = httpx.post(f"{url}/v1/retrieve", json={"query": "slow"}, timeout=30)
        assert response.status_code == 504 and "0.2" in response.json()["detail"]["message"]
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_streamed_answers_and_a_client_that_hangs_up(client):
    with client.stream("POST", "/v1/ask", json={"question": "who repairs the roof?", "stream": True}) as response:
        events = [line for line in response.iter_lines() if line.startswith("event: ")]
    assert events[0] == "event: token" and events[-2:] == ["event: sources", "event: done"]
    for _ in range(3):  # open a stream and go away after the first line
        with client.stream("POST", "/v1/ask", json={"question": "roof", "stream": True}) as response:
            next(response.iter_lines())
    plain = client.post("/v1/ask", json={"question": "who repairs the roof?", "top_k": 2}).json()
    assert plain["mode"] == "extractive" and plain["sources"][0]["doc_id"] == "lease.txt"
    assert client.get("/healthz").json() == {"status": "ok"}


def test_64_concurrent_upserts_of_one_id_leave_one_version_of_it(client, server):
    def upsert(i: int) -> int:
        with httpx.Client(base_url=server[0], timeout=120) as c:
            doc = {"id": "hot", "text": f"Version {i} of the hot clause about penalties."}
            return c.post("/v1/documents", json={"documents": [doc]}, headers=AUTH).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(upsert, range(64)))
    assert codes == [200] * 64
    text = client.get("/v1/documents/hot").json()["text"]
    assert text.startswith("Version ") and text.endswith("penalties.")
    index = DocumentIndex.load(server[1], writable=False)
    assert index.document_ids().count("hot") == 1
    assert len(index.vectors) == index.store.counts()[1] == sum(len(index.store.chunks_of(d)) for d in index.document_ids())
    hits = client.post("/v1/retrieve", json={"query": "hot clause penalties", "top_k": 50}).json()["hits"]
    assert [h["doc_id"] for h in hits].count("hot") == 1


def test_metrics_are_prometheus_text_with_every_family(client):
    client.post("/v1/retrieve", json={"query": "roof"})
    text = client.get("/metrics").text
    for name in METRIC_NAMES:
        if name != "deepseek_rag_gpu_memory_bytes":  # exported only when CUDA is in use
            assert f"# TYPE {name.removesuffix('_total')}" in text, name
    for stage in ("queue", "encode", "search", "fetch"):
        assert f'deepseek_rag_stage_seconds_count{{arm="default",stage="{stage}"}}' in text
    assert 'deepseek_rag_requests_total{arm="default",route="/v1/retrieve",status="200"}' in text
    assert "/v1/documents/lease.txt" not in text  # route templates, never raw paths


def test_openapi_documents_every_status_each_route_returns(client):
    schema = client.get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            if path.startswith("/v1/"):
                assert {"200", "401", "403", "413", "422", "504"} <= codes, (method, path)
            if method in ("post", "delete") and path.startswith("/v1/documents"):
                assert "503" in codes


def test_concurrent_readers_never_fail_while_documents_are_written(client, server):
    errors, stop = [], threading.Event()

    def read():
        with httpx.Client(base_url=server[0], timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/retrieve", json={"query": "confidential two years", "top_k": 3})
                if r.status_code != 200:
                    errors.append(r.text)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for i in range(5):
        client.post("/v1/documents", json={"documents": [{"id": f"w{i}", "text": f"Written clause {i}."}]}, headers=AUTH)
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert json.loads(client.get("/v1/documents/w4").text)["id"] == "w4"


def _search_calls(client: httpx.Client) -> float:
    line = next(l for l in client.get("/metrics").text.splitlines()
                if l.startswith('deepseek_rag_stage_seconds_count{arm="default",stage="search"}'))
    return float(line.split()[-1])


def test_queries_batched_together_are_searched_together_with_their_own_answers(tiny_model_dir, tmp_path):
    # a long window: the burst below lands in one encode batch, then in one search per set of parameters
    settings = ServeSettings(index=str(tmp_path / "index"), model=str(tiny_model_dir), api_key=KEY, batch_window_ms=300)
    queries = ["who repairs the roof?", "confidential for two years", "laws of New York", "the boiler"] * 3
    bodies = [{"query": q, "top_k": 2} for q in queries[:8]] + [
        {"query": q, "top_k": 2, "filters": {"year": {"$gte": 2022}}} for q in queries[8:]]
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/documents", json={"documents": DOCS}, headers=AUTH).status_code == 200
        alone = [client.post("/v1/retrieve", json=body).json()["hits"] for body in bodies]
        before = _search_calls(client)
        with ThreadPoolExecutor(len(bodies)) as pool:
            together = list(pool.map(lambda body: httpx.post(f"{url}/v1/retrieve", json=body, timeout=30).json()["hits"], bodies))
        searched = _search_calls(client) - before
    assert together == alone  # each request gets its own query's hits, filters included
    assert all(h["metadata"]["year"] >= 2022 for hits in together[8:] for h in hits)
    # hybrid: one dense and one sparse search per call; 12 requests searched alone would make 24
    assert searched <= 8, searched

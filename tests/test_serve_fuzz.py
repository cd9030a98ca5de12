"""Schemathesis against the live server's OpenAPI schema: a short, seeded run — no 500s, no undocumented status.

Cases are generated from the schema (valid and, in negative mode, invalid bodies, paths and headers) and sent over real HTTP to a
server on 127.0.0.1 that holds a small index and an API key (writes are fuzzed with and without it).
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error, status_code_conformance

from deepseek_rag.serve import ServeSettings

from serve_helpers import running_server

KEY = "fuzz-key"


@pytest.fixture(scope="module")
def api(tiny_model_dir, tmp_path_factory):
    import httpx

    settings = ServeSettings(index=str(tmp_path_factory.mktemp("fuzz") / "index"), model=str(tiny_model_dir), api_key=KEY,
                             max_request_bytes=1024 * 1024, timeout_s=20)
    with running_server(settings) as url:
        documents = [{"id": f"doc-{i}", "text": f"Clause {i}: the tenant repairs the roof and pays rent."} for i in range(5)]
        httpx.post(f"{url}/v1/documents", json={"documents": documents}, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=60).raise_for_status()
        yield schemathesis.openapi.from_url(f"{url}/openapi.json"), url


def test_no_server_errors_and_only_documented_statuses(api):
    schema, url = api
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    takes_input = lambda op: bool(len(op.body) or len(op.path_parameters) or len(op.query))  # noqa: E731
    pairs = [(op, mode) for op in operations for mode in GenerationMode if mode is GenerationMode.POSITIVE or takes_input(op)]
    fuzzed = []
    for operation, mode in pairs:  # valid input everywhere, invalid input where there is input to spoil

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            for headers in ({}, {"Authorization": f"Bearer {KEY}"}):
                case.call_and_validate(base_url=url, headers=headers, checks=[not_a_server_error, status_code_conformance])

        try:
            check()
        except Unsatisfiable:  # no invalid value can be written for this operation's input (a non-empty path part)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed.append((operation.label, mode.value))
    assert ("POST /v1/retrieve", "negative") in fuzzed and ("POST /v1/documents", "negative") in fuzzed

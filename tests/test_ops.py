"""ops/: the Prometheus config and alert rules (promtool), the Grafana dashboard's queries against what a live
server exports and a real Prometheus answers, and the compose file and Dockerfile (Docker cannot run here).

promtool and prometheus come from Debian's ``prometheus`` package (``.ci/run`` installs it); a test that needs
them fails when they are missing, it never skips.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deepseek_rag.serve import ServeSettings
from deepseek_rag.serve.metrics import METRIC_NAMES, ServeMetrics

from serve_helpers import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
PROMETHEUS_DIR = OPS / "prometheus"
DASHBOARD = OPS / "grafana" / "deepseek-rag.json"
METRIC = re.compile(r"\b(deepseek_rag_[A-Za-z0-9_]+)\s*(\{[^}]*\})?")
GPU_ONLY = "deepseek_rag_gpu_memory_bytes"  # exported only when CUDA is in use
KEY = "ops-test-key"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install prometheus (Debian's package has promtool and "
                    "prometheus; .ci/run installs it)")
    return path


def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=120)


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------------------------- rules
@pytest.mark.parametrize("command", [
    ("check", "config", "prometheus.yml"),
    ("check", "rules", "alerts.yml"),
    ("test", "rules", "alerts.test.yml"),
])
def test_promtool_accepts_the_config_the_rules_and_the_rule_tests(command):
    result = _promtool(*command[:-1], str(PROMETHEUS_DIR / command[-1]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def _rules() -> list[dict]:
    return [rule for group in _yaml(PROMETHEUS_DIR / "alerts.yml")["groups"] for rule in group["rules"]]


def test_every_alert_has_a_for_a_severity_and_words_for_the_operator():
    for rule in _rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_alert_is_tested_both_firing_and_quiet():
    fired, quiet = set(), set()
    for case in _yaml(PROMETHEUS_DIR / "alerts.test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - fired == set(), "alerts no test shows firing"
    assert alerts - quiet == set(), "alerts no test shows staying quiet"


def test_an_index_that_stops_moving_is_not_an_alert():
    for rule in _rules():
        assert "changes(" not in rule["expr"] and "index_swaps" not in rule["expr"], rule["alert"]


# ------------------------------------------------------------------------------------------- dashboard
def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside a collapsed row
    return panels


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target."""
    return [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in _panels() for t in p.get("targets", [])]


def _variable_queries() -> list[tuple[str, str]]:
    return [(f"variable {v['name']}", v["query"]) for v in _dashboard()["templating"]["list"] if v["type"] == "query"]


def _rule_exprs() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in _rules()]


def _exported_series() -> set[str]:
    """The series names the app's metric families are exported as (counters as ``_total``, histograms as
    ``_bucket``/``_sum``/``_count``); every family must be one of ``METRIC_NAMES``."""
    kinds = {family.name: family.type for family in ServeMetrics().registry.collect()}
    assert {name.removesuffix("_total") for name in METRIC_NAMES} == set(kinds)
    series = set()
    for name, kind in kinds.items():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(kind, ("",))
        series.update(name + suffix for suffix in suffixes)
    return series


def test_every_metric_the_dashboard_and_the_rules_query_is_one_the_app_exports():
    exported = _exported_series()
    for where, expr in _dashboard_exprs() + _variable_queries() + _rule_exprs():
        names = [name for name, _ in METRIC.findall(expr)]
        assert names or where.startswith("alert"), f"{where} queries no metric of the app"  # a rule may use up
        for name in names:
            assert name in exported, f"{where} queries {name}, which the app does not export"


def test_the_dashboard_shows_every_metric_family():
    used = {name for _, expr in _dashboard_exprs() for name, _ in METRIC.findall(expr)}
    for family in METRIC_NAMES:
        base = family.removesuffix("_total")
        assert any(name == family or name.startswith(base) for name in used), f"no panel shows {family}"


def test_the_dashboard_is_provisionable_with_a_datasource_and_an_arm_variable():
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["arm"]["type"] == "query" and variables["arm"]["includeAll"]
    assert dashboard["uid"] and "__inputs" not in dashboard  # __inputs is only replaced by a UI import
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    titles = " ".join(p["title"] for p in _panels()).lower()
    for topic in ("qps", "p50", "p99", "stage", "batch", "documents", "chunks", "version", "errors", "in-flight"):
        assert topic in titles, topic


# ------------------------------------------------------------------------------------------- live
DOCS = [
    {"id": "lease.txt", "text": "# Repairs\nThe tenant repairs the roof. The landlord pays for the boiler."},
    {"id": "nda.txt", "text": "The receiving party keeps the information confidential for two years."},
]


def _traffic(client: httpx.Client) -> None:
    """A little of everything a chat backend sends, 2xx and 4xx."""
    client.post("/v1/retrieve", json={"query": "who repairs the roof?", "top_k": 2}).raise_for_status()
    client.post("/v1/retrieve/batch", json={"queries": ["roof", "confidential"], "top_k": 1}).raise_for_status()
    client.post("/v1/ask", json={"question": "who pays for the boiler?"}).raise_for_status()
    client.get("/v1/documents/nda.txt").raise_for_status()
    client.get("/v1/index").raise_for_status()
    client.get("/readyz").raise_for_status()
    assert client.get("/v1/documents/missing.txt").status_code == 404
    assert client.post("/v1/retrieve", json={"query": "x", "top_k": 0}).status_code == 422
    assert client.post("/v1/documents", json={"documents": DOCS}).status_code == 401


@pytest.fixture(scope="module")
def live(tiny_model_dir, tmp_path_factory):
    """A server with a tiny model, and a Prometheus running ops/prometheus (its job, rules) against it with a
    scrape every second; yields (the server's /metrics text after some traffic, a client of Prometheus' API)."""
    _tool("promtool")
    prometheus = _tool("prometheus")
    folder = tmp_path_factory.mktemp("ops-live")
    settings = ServeSettings(index=str(folder / "index"), model=str(tiny_model_dir), api_key=KEY, watch_s=0.1)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.post("/v1/documents", json={"documents": DOCS}, headers={"Authorization": f"Bearer {KEY}"}).raise_for_status()
        config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [url.removeprefix("http://")]}]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        with (folder / "prometheus.log").open("w") as log:
            process = subprocess.Popen(
                [prometheus, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
                _wait(lambda: api.get("/-/ready").status_code == 200, "Prometheus to start", folder)
                # the first scrape comes a few seconds after start (target discovery is throttled)
                _wait(lambda: _instant(api, 'count_over_time(up{job="deepseek-rag"}[1m]) >= 3'),
                      "Prometheus to scrape the server", folder)
                for _ in range(3):
                    _traffic(client)
                done = time.time()
                # two scrapes after the traffic, so every rate() has samples to work on
                last_scrape = 'timestamp(up{job="deepseek-rag"}) > ' + str(done + 1.5)
                _wait(lambda: _instant(api, last_scrape), "two scrapes of the server after the traffic", folder)
                yield client.get("/metrics").text, api
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait(ready, what: str, folder: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; prometheus log:\n{(folder / 'prometheus.log').read_text()[-3000:]}")


def _instant(api: httpx.Client, query: str) -> list[dict]:
    body = api.get("/api/v1/query", params={"query": query}).json()
    assert body["status"] == "success", f"{query}: {body.get('error')}"
    return body["data"]["result"]


def _families(scrape: str) -> dict[str, set[str]]:
    """Series name -> label names, from the exposition text."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


def test_a_live_scrape_has_every_series_the_dashboard_and_the_rules_use(live):
    scraped = _families(live[0])
    for where, expr in _dashboard_exprs() + _variable_queries() + _rule_exprs():
        for name, selector in METRIC.findall(expr):
            if name == GPU_ONLY:
                continue  # CPU only here; the static test checks it is exported
            assert name in scraped, f"{where} queries {name}, which the live server does not export"
            if "arm" in scraped[name] and where.startswith("panel"):
                assert 'arm=~"$arm"' in selector, f"{where}: {name} ignores the arm variable"


def test_promtool_check_metrics_accepts_the_scrape(live):
    result = _promtool("check", "metrics", stdin=live[0])
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stdout + result.stderr


def _as_promql(expr: str) -> str:
    """A panel's query as Prometheus runs it once Grafana has filled in its variables ("All" is ".*")."""
    for variable, value in (("$__rate_interval", "15s"), ("$job", "deepseek-rag"), ("$instance", ".*"), ("$arm", ".*")):
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_every_panel_query_runs_in_prometheus_and_returns_series(live):
    api = live[1]
    for where, expr in _dashboard_exprs():
        result = _instant(api, _as_promql(expr))
        never_produced = GPU_ONLY in expr or 'status=~"5.."' in expr  # no CUDA and no 5xx in this test
        assert result or never_produced, f"{where} returns no series: {expr}"


def test_every_variable_lists_values(live):
    api = live[1]
    for where, query in _variable_queries():
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert match, f"{where}: {query}"
        values = api.get(f"/api/v1/label/{match[2]}/values", params={"match[]": _as_promql(match[1])}).json()["data"]
        assert values, f"{where} lists nothing"
    arms = api.get("/api/v1/label/arm/values", params={"match[]": "deepseek_rag_requests_total"}).json()["data"]
    assert arms == ["default"]


def test_the_rules_evaluate_and_a_healthy_server_raises_no_alert(live):
    api = live[1]
    rules = _wait_for_rules(api)
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in _rules()}
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        if rule["name"] != "DeepseekRagRetrieveSlow":  # its latency depends on how busy this machine is
            assert rule["state"] == "inactive", rule["name"]


def _wait_for_rules(api: httpx.Client) -> list[dict]:
    deadline = time.monotonic() + 30
    while True:
        groups = api.get("/api/v1/rules").json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = all(not rule.get("lastEvaluation", "0001").startswith("0001") for rule in rules)  # Go's zero time
        if rules and evaluated or time.monotonic() > deadline:
            return rules
        time.sleep(0.25)


# ------------------------------------------------------------------------------------------- compose, Dockerfile
def test_compose_names_the_three_services_and_publishes_on_loopback_only():
    compose = _yaml(OPS / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"deepseek-rag", "prometheus", "grafana"}
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, service in services.items():
        assert service["ports"], name
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):  # a bind mount, relative to ops/
                assert (OPS / source).exists(), (name, volume)
    # the pieces refer to each other by the names compose gives them
    target = _yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"deepseek-rag:{services['deepseek-rag']['ports'][0].rsplit(':', 1)[1]}"
    datasource = _yaml(OPS / "grafana/provisioning/datasources/prometheus.yaml")["datasources"][0]
    assert datasource["url"] == f"http://prometheus:{services['prometheus']['ports'][0].rsplit(':', 1)[1]}"
    provider = _yaml(OPS / "grafana/provisioning/dashboards/deepseek-rag.yaml")["providers"][0]
    assert f"./grafana/deepseek-rag.json:{provider['options']['path']}/deepseek-rag.json:ro" in services["grafana"]["volumes"]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in (OPS / "Dockerfile").read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def test_the_dockerfile_installs_the_pinned_cpu_torch_first_and_checks_readiness():
    pinned = re.search(r"torch==([\w.]+)", (ROOT / "Makefile").read_text())[1]
    installs = [args for kind, args in _dockerfile() if kind == "RUN" and "pip install" in args]
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={pinned}" in installs[0]
    assert "[serve]" in installs[1] and "torch" not in installs[1]
    instructions = dict(_dockerfile())  # the last of each kind
    assert "TORCH=cpu" in [args for kind, args in _dockerfile() if kind == "ARG"]
    assert "/readyz" in instructions["HEALTHCHECK"]
    assert instructions["USER"] not in ("root", "0")
    command = json.loads(instructions["ENTRYPOINT"]) + json.loads(instructions["CMD"])
    assert command == ["deepseek-rag", "serve", "/data/index", "--host", "0.0.0.0"]
    assert not any("API_KEY" in args for kind, args in _dockerfile() if kind in ("ENV", "ARG"))
    assert shlex.split(instructions["EXPOSE"]) == ["8000"]

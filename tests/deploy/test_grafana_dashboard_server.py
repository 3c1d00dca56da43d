"""The Grafana dashboard (deploy/grafana/streamserve.json) against the live session server: every metric its PromQL
queries name is in what the two endpoints export after some traffic (Triton's counters on the HTTP port's /metrics,
ours on Ray's metrics port), and, where the Prometheus binary is installed, a real Prometheus scraping both returns a
series for every query."""
import json
import os
import re
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from loadtest.prometheus import find_prometheus, query, stop
from serve.launcher import free_loopback_port
from serve.statistics import METRIC_NAMES

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "streamserve.json"
_FUNCTIONS = {"sum", "rate", "irate", "increase", "histogram_quantile", "avg", "max", "min", "count", "by", "without",
              "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "label_values"}


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"])
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label matchers, ranges, grouping
    label lists, functions and keywords are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1", expr)  # Grafana's variable query
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if not match.group(2) and match.group(1) not in _FUNCTIONS:
            names.add(match.group(1))
    return names


def scraped_names(text: str) -> set[str]:
    """Sample names (with _bucket / _sum / _count) in a Prometheus text exposition."""
    return {re.match(r"[a-zA-Z_:][\w:]*", line).group(0) for line in text.splitlines() if line and not line.startswith("#")}


def test_the_query_parser_finds_metric_names():
    assert metric_names('sum by (model, le) (rate(ray_x_bucket{model=~"$model"}[$__rate_interval])) / 1000') == {"ray_x_bucket"}
    assert metric_names("label_values(nv_inference_request_success, model)") == {"nv_inference_request_success"}
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a[5m]))) / on(model) b') == {"a", "b"}


def _traffic(server, seconds: float) -> None:
    client = httpclient.InferenceServerClient(server.http)
    a = np.ones((1, 16), np.int32)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.infer("simple", inputs)
        time.sleep(0.02)
    client.close()


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_every_dashboard_query_names_only_exported_metrics(server):
    _traffic(server, 1.0)
    triton = _scrape(f"http://{server.http}/metrics")
    assert scraped_names(triton) >= set(METRIC_NAMES)
    wanted = set().union(*map(metric_names, queries()))
    deadline = time.monotonic() + 30  # Ray's metrics agent exports every couple of seconds
    while True:
        exported = scraped_names(triton) | scraped_names(server.metrics_text())
        if wanted <= exported or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert wanted - exported == set(), f"queried but not exported: {sorted(wanted - exported)}"
    assert any(name.startswith("nv_inference_") for name in wanted) and any(name.startswith("ray_streamserve_") for name in wanted)


def test_prometheus_returns_a_series_for_every_dashboard_query(server, tmp_path):
    binary = find_prometheus()
    if not binary:
        if os.environ.get("STREAMSERVE_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("no prometheus binary, and STREAMSERVE_REQUIRE_PROMETHEUS=1")
        pytest.skip("no prometheus binary (apt-get install -y prometheus)")
    port = free_loopback_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        f"  - job_name: streamserve-triton\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{server.http}']\n"
        f"  - job_name: streamserve-ray\n    scrape_interval: 3s\n    scrape_timeout: 3s\n    static_configs:\n"
        f"      - targets: ['{server.metrics}']\n"
    )
    import subprocess

    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(tmp_path / "prometheus.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if sum(float(s["value"][1]) for s in query(url, "up")) == 2:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        load = threading.Thread(target=_traffic, args=(server, 10.0))
        load.start()
        load.join()
        empty = []
        for expr in queries():
            if expr.startswith("label_values("):
                metric = metric_names(expr).pop()
                promql = f"count by (model) ({metric})"
            else:
                promql = expr.replace("$model", ".*").replace("$__rate_interval", "30s")
            if not query(url, promql):  # query() raises on a PromQL error
                empty.append(expr)
        assert empty == [], f"queries with no series after 10 s of traffic: {empty}"
    finally:
        stop(process)

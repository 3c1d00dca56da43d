"""A real Prometheus server scraping the platform during a load run: `python -m loadtest.prometheus`.

Needs Debian's `prometheus` package (`apt-get install -y prometheus`; the binary at /usr/bin/prometheus,
or pass --prometheus). Starts the platform (serve/testing.py), writes a Prometheus config that scrapes
its metrics port every 3 s (SCRAPE_S), starts `prometheus` on a free loopback port with its own TSDB in a temp
dir, drives digits_cnn with a short locust run (gRPC users, steady), then queries Prometheus' HTTP API:

  sum by (model) (rate(ray_streamserve_requests_total[W]))                                    per-model request rate
  histogram_quantile(q, sum by (model, le) (rate(ray_streamserve_request_latency_ms_bucket[W])))  q = 0.5, 0.99
evaluated when the counters have settled, over a window W from the load's start to then (Ray's exporter can
deliver the load's increments after the load ended, and a fixed window read late can hold no samples),

and, from the counters' totals before and after the load (each read once they stop moving), the number of
requests the platform counted and the mean executed batch size. Prints / writes them to
loadtest/reports/suite/prometheus.json. Everything listens on 127.0.0.1 only.
"""
import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = {
    "request_rate": 'sum by (model) (rate(ray_streamserve_requests_total{{model="{m}"}}[{w}s]))',
    "latency_p50_ms": 'histogram_quantile(0.5, sum by (model, le) (rate(ray_streamserve_request_latency_ms_bucket{{model="{m}"}}[{w}s])))',
    "latency_p99_ms": 'histogram_quantile(0.99, sum by (model, le) (rate(ray_streamserve_request_latency_ms_bucket{{model="{m}"}}[{w}s])))',
}


def find_prometheus(explicit: str | None = None) -> str | None:
    return explicit or shutil.which("prometheus") or (Path("/usr/bin/prometheus").exists() and "/usr/bin/prometheus") or None


# Seconds between scrapes, and each scrape's timeout. Ray's metrics endpoint (every series of ~22 deployments)
# took longer than 1 s to answer on a saturated CI box, so 1 s scrapes all timed out there (up stayed 0).
SCRAPE_S = 3.0


def start_prometheus(binary: str, target: str, workdir: Path, scrape_s: float = SCRAPE_S):
    """Returns (http://127.0.0.1:port, process) once Prometheus reports ready."""
    from serve.launcher import free_loopback_port

    port = free_loopback_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {int(scrape_s * 1000)}ms\n  evaluation_interval: {int(scrape_s * 1000)}ms\n"
        f"scrape_configs:\n  - job_name: streamserve\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = workdir / "prometheus.log"
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
            return url, process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"prometheus did not start; log tail:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(url: str, promql: str, at: float | None = None) -> list[dict]:
    """An instant query, evaluated now or at the Unix time ``at``."""
    params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode(params), timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {promql}: {body}")
    return body["data"]["result"]


def scalar(result: list[dict]) -> float:
    return sum(float(s["value"][1]) for s in result) if result else float("nan")


def up(url: str) -> bool:
    return scalar(query(url, 'up{job="streamserve"}')) == 1.0


TOTALS = ("ray_streamserve_requests_total", "ray_streamserve_batch_size_sum", "ray_streamserve_batch_size_count")


def settle(url: str, model: str, timeout_s: float = 60) -> dict:
    """The model's counter totals in Prometheus once they stop moving (Ray's metrics agent exports on its own
    schedule, so a read right after a load can miss the last requests)."""
    read = lambda: tuple(scalar(query(url, f'sum({n}{{model="{model}"}}) or vector(0)')) for n in TOTALS)  # 0 before any request
    deadline, reads = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        time.sleep(2.0 + SCRAPE_S)  # one export (2 s) plus one scrape apart
        reads.append(read())
        if len(reads) >= 3 and reads[-1] == reads[-2] == reads[-3]:  # still for two intervals: a starved exporter pauses
            return dict(zip(TOTALS, reads[-1]))
    last = reads[-1] if reads else None
    raise RuntimeError(f"the platform's counters for {model} were still moving after {timeout_s} s: {last}")


def run(binary: str, repository: Path, model: str = "digits_cnn", load_s: float = 15, users: int = 8,
        server=None, workdir: Path | None = None) -> dict:
    """Load the platform while Prometheus scrapes it; returns {query name: value} read back from Prometheus.
    Starts (and stops) its own server unless one is passed in."""
    from serve.testing import start_server, stop_server
    from .suite import run_locust, summarize

    workdir = workdir or Path(tempfile.mkdtemp(prefix="prom-"))
    own = server is None
    if own:
        server = start_server(repository, workdir / "server")
    prom = None
    try:
        url, prom = start_prometheus(binary, server.metrics, workdir)
        deadline = time.monotonic() + 60
        while not up(url):
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus never scraped the platform (up != 1)")
            time.sleep(1)
        before = settle(url, model)
        load_started = time.time()
        rows = run_locust(workdir, "prom_load", model, "grpc", "steady", users, load_s, server.http, server.grpc)
        client = summarize(rows)
        after = settle(url, model)
        # Ray exports on its own schedule, late on a busy box: the load's increments can reach Prometheus after the
        # load ended. So the window runs from the load's start to the moment the totals settled.
        settled_at = time.time()
        window = int(settled_at - load_started) + 2
        out = {"model": model, "prometheus": url, "client_throughput": client["throughput"],
               "client_p99_ms": client["p99_ms"], "client_requests": client["requests"]}
        # Counts over the load from the counters' totals before and after (exact), and the mean batch from them:
        # a ratio of two rate()s came out below 1 (0.86, 0.94) in test runs, which no real batch mean can be.
        delta = {n: after[n] - before[n] for n in TOTALS}
        out["requests_counted"] = delta["ray_streamserve_requests_total"]
        out["batch_size_mean"] = delta["ray_streamserve_batch_size_sum"] / max(delta["ray_streamserve_batch_size_count"], 1)
        for name, q in QUERIES.items():
            out[name] = scalar(query(url, q.format(m=model, w=window), at=settled_at))
            out[f"{name}_query"] = q.format(m=model, w=window) + f" @ {settled_at:.0f}"
        return out
    finally:
        if prom is not None:
            stop(prom)
        if own:
            stop_server(server.process)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", help="path to the prometheus binary (default: from PATH)")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--model", default="digits_cnn")
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "reports" / "suite" / "prometheus.json")
    a = p.parse_args(argv)
    binary = find_prometheus(a.prometheus)
    if not binary:
        raise SystemExit("no prometheus binary: apt-get install -y prometheus (Debian), or pass --prometheus")
    result = run(binary, a.repository.resolve(), a.model, a.seconds)
    for k, v in result.items():
        if not k.endswith("_query"):
            print(f"{k:20} {v}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

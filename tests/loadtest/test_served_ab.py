"""loadtest.served_ab: two checkouts served one after the other, alternated, with the same client (real servers)."""
import json
from pathlib import Path

import pytest

from loadtest.served_ab import main, order, ratios

ROOT = Path(__file__).resolve().parents[2]


def test_ratios_pair_only_cells_measured_on_both_checkouts():
    rows = [{"round": 0, "checkout": "before", "protocol": "grpc", "concurrency": 8, "throughput": 100.0},
            {"round": 0, "checkout": "after", "protocol": "grpc", "concurrency": 8, "throughput": 150.0},
            {"round": 1, "checkout": "after", "protocol": "grpc", "concurrency": 8, "throughput": 120.0},
            {"round": 0, "checkout": "before", "protocol": "http", "concurrency": 8, "throughput": 50.0}]
    assert ratios(rows) == [{"round": 0, "protocol": "grpc", "concurrency": 8, "before": 100.0, "after": 150.0, "ratio": 1.5}]


def test_rounds_alternate_which_checkout_goes_first():
    assert [order(r) for r in range(3)] == [("before", "after"), ("after", "before"), ("before", "after")]


@pytest.fixture(scope="module")
def digits_repository(tmp_path_factory) -> Path:
    from export.build import main as build

    root = tmp_path_factory.mktemp("ab") / "model_repository"
    build(["--repository", str(root), "--only", "digits"])
    return root


def test_both_checkouts_are_served_and_every_cell_is_paired(digits_repository, tmp_path):
    out = tmp_path / "ab.json"
    pairs = main(["--before", str(ROOT), "--model", "digits_cnn", "--repository", str(digits_repository), "--rounds", "1",
                  "--concurrency", "2", "--duration", "0.5", "--out", str(out)])
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["checkout"], r["protocol"]) for r in rows] == [("before", "grpc"), ("before", "http"), ("after", "grpc"), ("after", "http")]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
    assert len(pairs) == 2 and all(p["ratio"] > 0 for p in pairs)
    assert report["commits"]["before"] == report["commits"]["after"] != ""

"""Issue 19's memory bound on the real server: each model's largest request (sized to the session server's request
limit) grows no serving process by more than 4x its messages plus the model's own working set, as stated per model in
`loadtest/reports/working_set.json` (`python -m loadtest.working_set`, measured at the default 64 MiB limit)."""
import json

import pytest

from loadtest.working_set import REPORT, bound_mb, largest_requests, measure


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_models_largest_request_stays_within_its_stated_working_set(server, protocol):
    stated = json.loads((REPORT / "working_set.json").read_text())["stated_working_set_mb"]
    items = largest_requests(server.repository, 1 << 20)  # the session server's limit (tests/conftest.py)
    assert {i.model for i in items} <= set(stated), "a model without a stated working set: run python -m loadtest.working_set"
    rows = measure(server.process.pid, getattr(server, protocol), items, protocol)
    assert not [r for r in rows if r["error"]], [(r["model"], r["error"]) for r in rows if r["error"]]
    over = {r["model"]: (r["growth_mb"], round(bound_mb(r, stated[r["model"]]))) for r in rows
            if r["growth_mb"] > bound_mb(r, stated[r["model"]])}
    assert not over, f"grew past 4x the messages plus the stated working set (MB grown, bound): {over}"
    # the requests were real work, not refusals: the largest were sized to the limit
    assert max(r["request_mb"] for r in rows) > 0.5

"""The in-process request-path measurement (loadtest/path_in_process.py) drives every path to a real answer."""
import json

import pytest

from loadtest import path_in_process


def test_each_path_answers_and_is_reported(repository, tmp_path, monkeypatch):
    monkeypatch.setattr(path_in_process, "REPORTS", tmp_path)
    path_in_process.main(["--repository", str(repository), "--callers", "4", "--requests", "24", "--repeats", "1", "--tag", "_t"])
    report = json.loads((tmp_path / "path_in_process_t.json").read_text())
    assert set(report["us_per_request"]) == {"grpc", "http", "fastapi"}
    assert all(len(v) == 1 and v[0] > 0 for v in report["us_per_request"].values())


def test_a_path_whose_answer_is_not_200_stops_the_measurement(repository, monkeypatch):
    from serve import rest

    async def refusing(scope, receive, send):
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error": "no"}'})

    monkeypatch.setattr(rest, "served_app", refusing)
    with pytest.raises(RuntimeError, match="status 400"):
        path_in_process.main(["--repository", str(repository), "--paths", "http", "--callers", "2", "--requests", "4", "--repeats", "1"])

"""The in-process worker measurement (loadtest/worker_in_process.py) answers every request it times."""
import re

from loadtest import worker_in_process
from serve import replica


def test_both_configurations_answer_and_the_burst_is_measured(repository, capsys, monkeypatch):
    monkeypatch.setattr(replica, "replica_resources", replica.replica_resources)  # restored after: the tool sets it
    worker_in_process.main(["--repository", str(repository), "--callers", "2", "--duration", "0.3", "--burst", "2"])
    lines = capsys.readouterr().out.splitlines()
    rates = {line.split(":")[0]: float(re.search(r": (\d+) images/s", line).group(1)) for line in lines if "images/s" in line}
    assert set(rates) == {"iqa", "iqa, network alone"} and min(rates.values()) > 0
    assert any(re.search(r"2 concurrent 4096² PNGs .*: peak resident growth -?\d+ MiB", line) for line in lines)

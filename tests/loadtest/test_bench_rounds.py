"""`make bench` compares servers measured seconds apart: every cell's rounds alternate the servers, and a ratio is
the median of the rounds' own ratios, never a ratio of figures taken minutes apart."""
from loadtest.bench import markdown, medians, ratio_by_round, schedule


def test_each_round_runs_every_server_once_with_the_first_one_rotated():
    order = schedule(["digits_cnn", "iqa"], ("grpc", "http"), [1, 32], 3,
                     lambda model: ["ours", "triton", "in-process"] if model == "digits_cnn" else ["ours", "in-process"])
    rounds = {}
    for model, protocol, n, r, server in order:
        rounds.setdefault((model, protocol, n, r), []).append(server)
    for (model, protocol, n, r), servers in rounds.items():
        expected = {"ours", "triton"} if model == "digits_cnn" else {"ours"}
        expected |= {"in-process"} if protocol == "grpc" else set()  # no protocol: once per model and N
        assert sorted(servers) == sorted(expected)
    assert [rounds["digits_cnn", "grpc", 32, r][0] for r in range(3)] == ["ours", "triton", "in-process"]
    # a cell's rounds run back to back: no other cell between them
    cells = [(model, protocol, n) for model, protocol, n, _, _ in order]
    for cell in set(cells):
        where = [i for i, c in enumerate(cells) if c == cell]
        assert where == list(range(where[0], where[0] + len(where)))


def _row(server, throughput, r, protocol="grpc"):
    return {"server": server, "model": "digits_cnn", "protocol": protocol, "concurrency": 32, "round": r,
            "throughput": throughput, "p50_ms": 1000 / throughput, "p99_ms": 2000 / throughput, "errors": 0}


def test_the_ratio_is_the_median_of_each_rounds_ratio_not_of_the_medians():
    # the box slows down over the run: each round, ours beats the peer by 10 %, while the medians alone would say 0.83x
    rows = [_row("ours", 1100, 0), _row("triton", 1000, 0),
            _row("ours", 550, 1), _row("triton", 500, 1),
            _row("ours", 660, 2), _row("triton", 600, 2),
            _row("triton", 1200, 3), _row("ours", 440, 3)]
    cells = medians(rows)
    ours, triton = cells["ours", "digits_cnn", "grpc", 32], cells["triton", "digits_cnn", "grpc", 32]
    assert ours["throughput"] == 605 and triton["throughput"] == 800
    median, lowest, highest = ratio_by_round(ours, triton)
    assert (round(median, 3), round(lowest, 3), round(highest, 3)) == (1.1, 0.367, 1.1)
    assert ratio_by_round(ours, None) is None


def test_the_table_shows_each_ratios_median_and_range_over_rounds():
    rows = [_row("ours", 1100, 0), _row("triton", 1000, 0), _row("ours", 900, 1), _row("triton", 1000, 1),
            _row("ours", 1000, 2), _row("triton", 1000, 2)]
    report = {"date": "today", "machine": "2 cores", "duration_s": 6, "rounds": 3, "idle_cores": {"ours": 0.1, "triton": 0.02},
              "rows": rows}
    table = markdown(report, ["digits_cnn"], [32])
    line = next(line for line in table.splitlines() if line.startswith("| digits_cnn | grpc | 32 |"))
    assert "1.00× (0.90–1.10)" in line and "1000 (1.0 / 2.0)" in line
    assert "ours 0.10, triton 0.02" in table


def test_idle_cost_is_measured_per_server_and_summed_over_its_processes():
    import subprocess
    import sys
    import time

    from loadtest.bench import Peer, idle_cores

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    asleep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.5)  # past the interpreters' start-up
    try:
        used = idle_cores([Peer("spinning", {}, 0, busy), Peer("spinning", {}, 0, asleep), Peer("waiting", {}, 0, asleep)], 1.0)
    finally:
        busy.kill(), asleep.kill()
        busy.wait(), asleep.wait()
    assert set(used) == {"spinning", "waiting"}
    assert used["spinning"] > 0.3 and used["waiting"] < 0.1

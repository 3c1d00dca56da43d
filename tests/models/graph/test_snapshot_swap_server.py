"""The hosted graph replaced on a running server (issue 5: "a new snapshot without downtime"): real Ray Serve,
real gRPC clients through tritonclient, `python -m serve reload` as an operator runs it. Small untrained graph
family, so the server starts in seconds; loadtest/snapshot_swap.py measures the same at the hosted size."""
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from models.graph.export import add_snapshot, clusters_bytes, write_family
from serve.testing import start_server, stop_server
from loadtest.snapshot_swap import new_graph, swap_under_load
from models.graph.model import BotRGCN
from models.graph.synth import GraphConfig, generate
from serve.repository import load_model

SMALL = GraphConfig(n_users=1200, edge_scale=0.02, n_groups=4, seed=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch.manual_seed(0)
    graph = generate(SMALL)
    labels = graph["group"].clip(min=-1) + 1
    meta = {"seed": 0, "config": {"hidden": 16, "epochs": 0, "lr": 0.0}, "graph": {"edge_scale": SMALL.edge_scale, "seed": SMALL.seed}, "served": {}}
    root = tmp_path_factory.mktemp("swap") / "repo"
    write_family(root, BotRGCN(hidden=16).eval(), meta, graph, clusters_bytes(graph, labels, np.full(len(labels), 0.5, np.float32), int(labels.max()) + 1), {"k": int(labels.max()) + 1})
    srv = start_server(root, tmp_path_factory.mktemp("swap-server"), timeout_s=300)
    srv.graph_ids = graph["account_id"]
    yield srv
    assert stop_server(srv.process) == 0, srv.log.read_text()[-2000:]


def reload(server) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serve", "reload", "--temp-dir", str(server.temp_dir)], capture_output=True, text=True, timeout=300)


def test_new_graph_swaps_in_under_load_without_an_error(server, tmp_path):
    path = tmp_path / "new.npz"
    new_ids = new_graph(server.graph_ids, path, n_users=900, edge_scale=0.02)
    ids = (int(server.graph_ids[0]), int(server.graph_ids[-1]), int(new_ids[-1]))
    result = swap_under_load(server, lambda: add_snapshot(server.repository, path), ids, clients=3, settle_s=2.0)
    print({k: v for k, v in result.items() if k != "reload_output"})
    assert result["reload_rc"] == 0 and "reloaded bot_detector_v1" in result["reload_output"], result["reload_output"]
    assert result["error_count"] == 0, result["errors"]
    assert result["mixed"] == []  # no request was answered from two snapshots
    assert result["old"] > 0 and result["new"] > 0 and result["monotone"]
    assert result["old_after_reload_returned"] == 0  # once the command returns, every replica serves the new graph
    # Operators see which snapshot is in service: the gauge is 1 for the new file and 0 for the replaced one.
    name = load_model(server.repository / "bot_detector").snapshot
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        samples = {line.split("snapshot=\"")[1].split("\"")[0]: float(line.rsplit(" ", 1)[1])
                   for line in server.metrics_text().splitlines() if line.startswith("ray_streamserve_snapshot_info{")}
        if samples.get(name) == 1.0 and samples.get("graph.npz") == 0.0:
            break
        time.sleep(1)
    assert samples.get(name) == 1.0 and samples.get("graph.npz") == 0.0, samples


def test_reload_with_nothing_changed_and_refused_structural_changes(server):
    done = reload(server)
    assert done.returncode == 0 and "nothing changed" in done.stdout
    # A new version folder would add a deployment and remove one: Serve would rebuild the application and restart
    # the ingress, so the reload refuses and the server keeps serving what it has.
    folder = server.repository / "account_clusters"
    shutil.copytree(folder / "1", folder / "2")
    try:
        refused = reload(server)
    finally:
        shutil.rmtree(folder / "2")
    assert refused.returncode == 1 and "restart the server" in refused.stdout
    assert "account_clusters_v2" in refused.stdout

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc)
    assert client.is_model_ready("account_clusters", "1")
    with pytest.raises(InferenceServerException, match="does not serve version 2"):
        client.is_model_ready("account_clusters", "2")
    client.close()

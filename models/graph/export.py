"""Export the graph family: `bot_detector`, `bot_detector_subgraph`, `account_clusters`,
`account_cluster_members`, `account_clusters_job` (all `backend: "python"`, handlers in models/graph/serving.py).

    python -m export.build --only graph                       # from the committed weights, no training
    python -m models.graph.export --add-snapshot new.npz [--clusters c.npz]   # a new hosted graph, then:
    python -m serve reload                                              # swapped into the running server

Why three pieces and not one ONNX graph: RGCN's per-relation mean needs a scatter-add. Exported through the
legacy exporter (index_add -> ScatterElements) it took 12 s on the 1.7M-edge graph in ONNX Runtime and
differed from PyTorch by up to 0.09 (duplicate indices), so the relational layers run as scipy sparse
matmuls in the handler; the dense per-node parts (BotRGCN's input block; its output block and heads) are
ONNX (`encoder.onnx`, `heads.onnx`). Parity is checked against the PyG model here, end to end, both for the
whole graph and for the hosted 2-hop query path.

A new graph snapshot is data, not a new model: it is written beside the current one in the served version folder
under a content-addressed name and named by config.pbtxt's `snapshot` parameter, which the Serve config turns into the
deployment's `user_config`. Reloading the config is then Serve's lightweight update: the running replicas build the
new snapshot while the old one answers, then swap (serve/replica.py `ModelWorker.reconfigure`); no restart, no gap.
"""
import argparse
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from models.graph.model import BotRGCN, ServedEncoder
from models.graph.serving import (
    MAX_JOB_CLUSTERS, MAX_JOB_EDGES, MAX_JOB_FEATURES, MAX_JOB_NODES, MAX_SUBGRAPH_EDGES, MAX_SUBGRAPH_NODES, BotDetectorHandler, BotScorer,
    ClusterJobHandler, ClusterSnapshot, HostedGraph, validate_subgraph,
)
from models.graph.synth import N_FEATURES, GraphConfig, generate
from models.graph.train import SERVED

from export.onnx_export import check_parity, export_onnx
from export.repository import install_snapshot, latest_version_dir
from export.served_model import ServedModel, Tensor

CLUSTERS = SERVED.parent / "clusters.npz"
HANDLER = "models.graph.serving:{}"

ACCOUNT_IDS = Tensor("ACCOUNT_IDS", "INT64", (1,), "account ids of the hosted graph (one per row)")
FOUND = Tensor("FOUND", "BOOL", (1,), "false for an unknown id (its other outputs are -1 / 0)")
MODELS = {
    "bot_detector": ServedModel(
        "bot_detector", platform="python", handler=HANDLER.format("BotDetectorHandler"), params=BotDetectorHandler.Params(),
        max_batch_size=256, queue_delay_us=2000, server_params={"snapshot": "graph.npz"},
        inputs=(ACCOUNT_IDS,),
        outputs=(Tensor("BOT_PROBABILITY", "FP32", (1,), "P(bot)"),
                 Tensor("STANCE_PROBS", "FP32", (3,), "P(neutral, against, support)"), FOUND),
    ),
    "bot_detector_subgraph": ServedModel(
        "bot_detector_subgraph", platform="python", handler=HANDLER.format("SubgraphHandler"),
        inputs=(
            Tensor("NODE_FEATURES", "FP32", (-1, N_FEATURES), f"the caller's accounts' features, ≤ {MAX_SUBGRAPH_NODES:,} nodes"),
            Tensor("EDGE_INDEX", "INT64", (2, -1), f"edges, messages flow row 0 → row 1, ≤ {MAX_SUBGRAPH_EDGES:,}"),
            Tensor("EDGE_TYPE", "INT64", (-1,), "relation of each edge, 0..6"),
            Tensor("TARGETS", "INT64", (-1,), "the nodes to score"),
        ),
        outputs=(Tensor("BOT_PROBABILITY", "FP32", (-1,), "P(bot) per target"),
                 Tensor("STANCE_PROBS", "FP32", (-1, 3), "P(neutral, against, support) per target")),
    ),
    "account_clusters": ServedModel(
        "account_clusters", platform="python", handler=HANDLER.format("ClusterLookupHandler"),
        max_batch_size=256, queue_delay_us=1000, server_params={"snapshot": "clusters.npz"},
        inputs=(ACCOUNT_IDS,),
        outputs=(Tensor("CLUSTER", "INT64", (1,), "the account's cluster (-1 if unknown)"),
                 Tensor("CONFIDENCE", "FP32", (1,), "Student-t soft assignment at that cluster"), FOUND),
    ),
    "account_cluster_members": ServedModel(
        "account_cluster_members", platform="python", handler=HANDLER.format("ClusterMembersHandler"),
        server_params={"snapshot": "clusters.npz"},
        inputs=(Tensor("CLUSTER", "INT64", (1,), "a cluster of the hosted clustering"),),
        outputs=(Tensor("MEMBERS", "INT64", (-1,), "its account ids, most confident first"),
                 Tensor("CONFIDENCE", "FP32", (-1,), "their confidences")),
    ),
    "account_clusters_job": ServedModel(
        "account_clusters_job", platform="python", handler=HANDLER.format("ClusterJobHandler"), params=ClusterJobHandler.Params(),
        decoupled=True,
        inputs=(
            Tensor("NODE_FEATURES", "FP32", (-1, -1), f"the caller's graph: ≤ {MAX_JOB_NODES:,} nodes, ≤ {MAX_JOB_FEATURES:,} features"),
            Tensor("EDGE_INDEX", "INT64", (2, -1), f"≤ {MAX_JOB_EDGES:,} edges"),
            Tensor("N_CLUSTERS", "INT64", (1,), f"2..{MAX_JOB_CLUSTERS} clusters (at most the node count)"),
        ),
        outputs=(Tensor("PROGRESS", "FP32", (1,), "0..1, in every streamed response"),
                 Tensor("STATUS", "BYTES", (1,), "the job's state, JSON"),
                 Tensor("CLUSTER", "INT64", (-1,), "each node's cluster (the last response)"),
                 Tensor("CONFIDENCE", "FP32", (-1,), "each node's confidence (the last response)")),
    ),
}


class OutputBlock(nn.Module):
    """BotRGCN after its second relational layer: Linear + LeakyReLU, heads, softmax."""

    def __init__(self, model: BotRGCN):
        super().__init__()
        self.out, self.heads = model.out, model.heads

    def forward(self, h):
        bot, stance = self.heads(torch.nn.functional.leaky_relu(self.out(h)))
        return torch.softmax(bot, dim=1)[:, 1], torch.softmax(stance, dim=1)


def load_trained(path: Path = SERVED) -> tuple[BotRGCN, dict]:
    if not path.exists():
        from models.graph.train import main as train_main

        print(f"no weights at {path}: training BotRGCN (about a minute) ...", flush=True)
        train_main(["--model", "BotRGCN", "--save"])
    meta = json.loads(path.with_suffix(".json").read_text())
    model = BotRGCN(meta["config"]["hidden"], meta["config"]["dropout"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta


def hosted_graph(meta: dict) -> dict:
    cfg = dict(meta["graph"])
    cfg["edge_counts"] = tuple(cfg["edge_counts"])
    return generate(GraphConfig(**cfg))


def model_files(model: BotRGCN, sample_x: np.ndarray) -> tuple[dict[str, bytes], dict]:
    """encoder.onnx, heads.onnx, gnn.npz, each dense part parity-checked against PyTorch."""
    enc = ServedEncoder(model.encoder).eval()
    enc_bytes = export_onnx(enc, (torch.from_numpy(sample_x[:4]),), ["x"], ["h0"])
    errors = {f"encoder.{k}": v for k, v in check_parity(enc, enc_bytes, {"x": sample_x}).items()}
    head = OutputBlock(model).eval()
    with torch.no_grad():
        h = torch.randn(len(sample_x), model.hidden) * 2
    head_bytes = export_onnx(head, (h[:4],), ["h"], ["bot_probability", "stance_probs"])
    errors |= {f"heads.{k}": v for k, v in check_parity(head, head_bytes, {"h": h.numpy()}).items()}
    buf = io.BytesIO()
    np.savez(buf, **{f"{n}{i}": getattr(c, a).detach().numpy().astype(np.float32)
                     for i, c in ((1, model.c1), (2, model.c2)) for n, a in (("w", "weight"), ("root", "root"), ("b", "bias"))})
    return {"encoder.onnx": enc_bytes, "heads.onnx": head_bytes, "gnn.npz": buf.getvalue()}, errors


def snapshot_bytes(graph: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=graph["x"], edge_index=graph["edge_index"], edge_type=graph["edge_type"], account_id=graph["account_id"])
    return buf.getvalue()


def end_to_end_parity(model: BotRGCN, files: dict[str, bytes], graph: dict, n_queries: int = 300) -> dict:
    """The handler's numpy path against PyG, on the whole hosted graph and through 2-hop queries."""

    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        scorer = BotScorer(Path(d))
        bot, stance = scorer.full_graph(graph["x"], graph["edge_index"], graph["edge_type"])
        hosted = HostedGraph(scorer, graph["x"], graph["edge_index"], graph["edge_type"], graph["account_id"])
        nodes = np.random.default_rng(0).choice(len(graph["x"]), n_queries)
        qb, qs = hosted.score(nodes)
        cached = HostedGraph(scorer, graph["x"], graph["edge_index"], graph["edge_type"], graph["account_id"], cache_layer1=True)
        cb, cs = cached.score(nodes)
    with torch.no_grad():
        b, s = model(torch.from_numpy(graph["x"]), torch.from_numpy(graph["edge_index"]), torch.from_numpy(graph["edge_type"]))
    pb, ps = torch.softmax(b, 1)[:, 1].numpy(), torch.softmax(s, 1).numpy()
    errors = {"full.bot": float(np.abs(bot - pb).max()), "full.stance": float(np.abs(stance - ps).max()),
              "query.bot": float(np.abs(qb - pb[nodes]).max()), "query.stance": float(np.abs(qs - ps[nodes]).max()),
              "query_cached.bot": float(np.abs(cb - pb[nodes]).max()), "query_cached.stance": float(np.abs(cs - ps[nodes]).max())}
    if max(errors.values()) > 1e-4:
        raise AssertionError(f"served BotRGCN differs from PyG: {errors}")
    return errors


def card(name: str, meta: dict, errors: dict, graph: dict, extra: str = "") -> str:
    s = meta.get("served", {})
    report = Path(__file__).resolve().parent / "report" / "results.md"
    return f"""# {name}

**Data: generated, MGTAB-shaped — not MGTAB** (which cannot be downloaded here). Served model: BotRGCN, one trunk
with a bot head and a stance head, trained by `python -m models.graph.train --model BotRGCN --seed {meta['seed']} --save`
on the graph `models.graph.synth.generate(GraphConfig(edge_scale={meta['graph']['edge_scale']}, seed={meta['graph']['seed']}))`:
{len(graph['x'])} users, {graph['edge_index'].shape[1]} edges over 7 relations (MGTAB's counts × {meta['graph']['edge_scale']}),
788 features. Hidden {meta['config']['hidden']}, {meta['config']['epochs']} epochs, AdamW lr {meta['config']['lr']}.
Split 70/20/10 (seed {meta['seed']}); the served weights are those of the epoch with the best sum of bot and stance
**validation** accuracy (epoch {s.get('epoch')}).

Test split at that epoch: bot acc {100 * s.get('bot', {}).get('acc', float('nan')):.2f}, macro-F1 {100 * s.get('bot', {}).get('f1', float('nan')):.2f};
stance acc {100 * s.get('stance', {}).get('acc', float('nan')):.2f}, macro-F1 {100 * s.get('stance', {}).get('f1', float('nan')):.2f}.
MGTAB's published BotRGCN (real data): bot acc 89.60, F1 87.16. Full multi-seed tables: models/graph/report/results.md
(`python -m models.graph.evaluate`){' — present' if report.exists() else ''}.

Served as: `encoder.onnx` (per-node input block) → two RGCN layers in numpy/scipy (`gnn.npz`) → `heads.onnx`.
Parity against the PyG model (max abs error): {', '.join(f'{k} {v:.1e}' for k, v in errors.items())}.
{extra}

{MODELS[name].signature()}

See models/graph/README.md for the model card and the errors.
"""


def clusters_bytes(graph: dict, labels: np.ndarray, confidence: np.ndarray, k: int) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, account_id=graph["account_id"], cluster=labels.astype(np.int16), confidence=confidence.astype(np.float32), k=np.int64(k))
    return buf.getvalue()


def write_family(root: Path, model: BotRGCN, meta: dict, graph: dict, clusters: bytes, cmeta: dict) -> dict:
    """Export, check, and write the five models; returns the parity errors."""
    from export.repository import write_model

    files, errors = model_files(model, graph["x"][:512])
    errors |= end_to_end_parity(model, files, graph)
    write_model(root, "bot_detector", MODELS["bot_detector"].config_pbtxt(), {1: {**files, "graph.npz": snapshot_bytes(graph)}}, card("bot_detector", meta, errors, graph,
                "Version folder: graph.npz is the hosted snapshot (x, edge_index, edge_type, account_id)."))
    write_model(root, "bot_detector_subgraph", MODELS["bot_detector_subgraph"].config_pbtxt(), {1: files}, card("bot_detector_subgraph", meta, errors, graph))
    ccard = f"""# account_clusters / account_cluster_members / account_clusters_job

CCGC (models/graph/ccgc.py) on the hosted generated MGTAB-shaped graph ({len(graph['x'])} users), K = {cmeta['k']},
node attributes: {cmeta.get('config', {}).get('attributes', 'features')} (see models/graph/README.md, "The served
clustering"), by `python -m models.graph.cluster_snapshot` (no labels used). Against the planted coordinated bot groups
(restricted to grouped bots): {json.dumps(cmeta.get('planted_groups'))}. Confidence: Student-t soft assignment at the
assigned cluster. The job model fits CCGC (40 epochs, parameter `job_epochs`) on a caller's graph (≤ 5,000 nodes,
≤ 200,000 edges, ≤ 1,024 features, 2..64 clusters), streaming progress. See models/graph/README.md.
"""
    for name in ("account_clusters", "account_cluster_members"):
        write_model(root, name, MODELS[name].config_pbtxt(), {1: {"clusters.npz": clusters}}, ccard + "\n" + MODELS[name].signature() + "\n")
    job = MODELS["account_clusters_job"]
    write_model(root, job.name, job.config_pbtxt(), {1: {"README": b"CCGC fitted per request; no data.\n"}}, ccard + "\n" + job.signature() + "\n")
    return errors


def build(root: Path) -> None:
    torch.set_num_threads(1)
    model, meta = load_trained()
    graph = hosted_graph(meta)
    if not CLUSTERS.exists():
        from models.graph.cluster_snapshot import main as cluster_main

        print(f"no clustering at {CLUSTERS}: running CCGC on the hosted graph (a few minutes) ...", flush=True)
        cluster_main([])
    c = np.load(CLUSTERS)
    if not np.array_equal(c["account_id"], graph["account_id"]):
        raise RuntimeError(f"{CLUSTERS} was computed on another graph than {SERVED}'s: rerun python -m models.graph.cluster_snapshot")
    write_family(root, model, meta, graph, CLUSTERS.read_bytes(), json.loads(CLUSTERS.with_suffix(".json").read_text()))


def add_snapshot(root: Path, graph: Path, clusters: Path | None = None) -> dict[str, str]:
    """Install a new hosted graph (npz: x, edge_index, edge_type, account_id) for `bot_detector` and, with
    `clusters` (npz: account_id, cluster, confidence, k, e.g. from models.graph.cluster_snapshot), the matching
    clustering for `account_clusters` / `account_cluster_members`. Each file is checked by loading it as a replica
    would before anything is written; the earlier snapshot files stay (pointing `snapshot` back is the rollback).
    Returns {model: installed file name}."""

    with np.load(graph, allow_pickle=False) as g:
        g = {k: g[k] for k in ("x", "edge_index", "edge_type", "account_id")}
    validate_subgraph({"NODE_FEATURES": g["x"], "EDGE_INDEX": g["edge_index"], "EDGE_TYPE": g["edge_type"]}, max_nodes=10**7, max_edges=10**9)
    if len(g["account_id"]) != len(g["x"]) or len(np.unique(g["account_id"])) != len(g["x"]):
        raise ValueError(f"{graph}: account_id must hold one unique id per node")
    HostedGraph.load(BotScorer(latest_version_dir(root / "bot_detector")), graph)  # what a replica will do with it
    if clusters is not None:
        c = ClusterSnapshot(clusters)
        if not np.array_equal(np.sort(c.account_id), np.sort(g["account_id"])):
            raise ValueError(f"{clusters}: its account ids are not the new graph's; cluster the new graph (models.graph.cluster_snapshot)")
        if len(c.cluster) != len(c.account_id) or c.cluster.min() < 0 or c.cluster.max() >= c.k:
            raise ValueError(f"{clusters}: expected one cluster in 0..k-1 per account")
    # Everything checked: only now does anything land.
    installed = {"bot_detector": install_snapshot(root / "bot_detector", graph, "graph")}
    if clusters is not None:
        for name in ("account_clusters", "account_cluster_members"):
            installed[name] = install_snapshot(root / name, clusters, "clusters")
    return installed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--add-snapshot", type=Path, help="npz with x, edge_index, edge_type, account_id")
    p.add_argument("--clusters", type=Path, help="with --add-snapshot: the new graph's clustering (npz: account_id, cluster, confidence, k)")
    a = p.parse_args(argv)
    if a.add_snapshot:
        for model, name in add_snapshot(a.repository, a.add_snapshot, a.clusters).items():
            print(f"{model}: snapshot {name} installed")
        print("a running server swaps it in on `python -m serve reload` (Kubernetes: regenerate and apply the Serve config)")
    else:
        build(a.repository)


if __name__ == "__main__":
    main()

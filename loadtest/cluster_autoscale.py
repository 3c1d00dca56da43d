"""Scale-out with Ray's own autoscaler, on one machine: `python -m loadtest.cluster_autoscale`.

A Ray cluster of Ray's fake multi-node provider (every "node" a raylet on this machine) whose autoscaler config is not
written here: it is the KubeRay autoscaler's own translation (`_derive_autoscaling_config_from_ray_cr`) of the
RayCluster spec deploy/k8s/generate.py renders, so node types (a CPU head, a `gpu` group declaring GPU: 1, a `cpu`
group), their min/max, the idle timeout and the upscaling mode are those of the manifests. Only the provider changes
(fake_multinode instead of kuberay) and memory is left out (fake nodes cannot declare it).

The application is the Serve config generated from a copy of the model repository in which `heat1d` is a GPU model
(`instance_group [{kind: KIND_GPU, count: 4}]`, `num_gpus` 0.5: two replicas share a card), served by the ordinary
launcher joined to the cluster (`--ray-address`). The GPUs are declared, not present: the replicas fall back to the
CPU and say so (`device_fallback` in describe()).

Phases, load being N gRPC clients each asking for a 200-step heat1d rollout (loadtest/autoscale.py's load):
idle; load until Serve wants more replicas than one GPU node holds and the autoscaler adds one; a hold; the GPU node
with most replicas lost under load (`--kill node`: its raylet and its workers SIGKILLed at once, a machine gone;
`--kill raylet`: the raylet alone, whose workers live on until the autoscaler terminates the node); load until service
is whole again; no load until the autoscaler has removed the idle node. Every 2 s: alive nodes by type, heat1d replicas alive per node type and
pending, Serve's target, throughput and p99 latency. Writes loadtest/results/cluster_autoscale.{csv,png,json}.

The cluster is this run's own: its head on free ports under its own --temp-dir, torn down by killing the processes
that name that temp dir or its GCS port (never `ray stop`, which would stop every Ray on the machine).
"""
import argparse
import asyncio
import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from serve.launcher import free_loopback_port, prepare_environment
from serve.settings import ServerSettings
from serve.testing import start_server, stop_server
from streamserve_proto import model_config_pb2

from .autoscale import DEPLOYMENT, MODEL, offer_load, replica_counts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head node type
GPU_COUNT, GPU_SHARE = 4, 0.5  # heat1d's instance_group count (Serve's max_replicas) and num_gpus per replica
ALSO_SERVED = ("simple",)  # a CPU model in the ingress, beside the GPU one


def k8s_generator():
    """deploy/k8s/generate.py, a script rather than a package module."""
    spec = importlib.util.spec_from_file_location("k8s_generate", ROOT / "deploy" / "k8s" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_config(text: str, count: int = GPU_COUNT, num_gpus: float = GPU_SHARE) -> str:
    """A config.pbtxt made a GPU model: one KIND_GPU instance group of `count`, each replica holding `num_gpus`."""
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    del config.instance_group[:]
    config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=count)
    config.parameters["num_gpus"].string_value = str(num_gpus)
    return text_format.MessageToString(config)


def gpu_repository(source: Path, target: Path, gpu_model: str = MODEL, others=ALSO_SERVED) -> Path:
    """A repository holding `gpu_model` made a GPU model, and `others` as they are."""
    if target.exists():
        shutil.rmtree(target)
    for name in (gpu_model, *others):
        shutil.copytree(source / name, target / name)
    config = target / gpu_model / "config.pbtxt"
    config.write_text(gpu_config(config.read_text()))
    return target


def rendered_ray_cluster(repository: Path) -> dict:
    """The RayCluster part (`rayClusterConfig`) of the RayService deploy/k8s/generate.py renders, as a RayCluster CR."""
    generate = k8s_generator()
    service = next(iter(yaml_documents(generate.render(repository, **generate.DEFAULTS)["rayservice.yaml"])))
    return {"metadata": service["metadata"], "spec": service["spec"]["rayClusterConfig"]}


def yaml_documents(text: str):
    import yaml

    return [d for d in yaml.safe_load_all(text) if d is not None]


def simulated_autoscaler_config(ray_cluster: dict, gcs_address: str) -> dict:
    """The autoscaler config KubeRay's autoscaler derives from `ray_cluster`, on the fake multi-node provider."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _HEAD_GROUP_NAME, _derive_autoscaling_config_from_ray_cr

    config = _derive_autoscaling_config_from_ray_cr(ray_cluster)
    config["provider"] = {
        "type": "fake_multinode",
        "gcs_address": gcs_address,  # else its nodes look for a GCS on 6379, another cluster's or none
        "use_node_id_as_ip": True,
        "disable_launch_config_check": True,
        "disable_node_updaters": True,
    }
    types = config["available_node_types"]
    types[HEAD_TYPE] = types.pop(_HEAD_GROUP_NAME)
    config["head_node_type"] = HEAD_TYPE
    for node_type in types.values():
        node_type["resources"].pop("memory", None)  # a fake node takes CPU, GPU and custom resources only
    return config


# --- the cluster ----------------------------------------------------------------------------------------------------


class Cluster:
    """A head started with `ray start` on free ports under its own temp dir; its autoscaler starts and stops workers."""

    def __init__(self, autoscaler_config: dict, temp_dir: Path, gcs_port: int, metrics_port: int, env: dict):
        self.temp_dir, self.gcs_port, self.env = temp_dir, gcs_port, env
        self.address = f"127.0.0.1:{gcs_port}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        config_file = temp_dir / "autoscaler.json"
        config_file.write_text(json.dumps(autoscaler_config))
        head = autoscaler_config["available_node_types"][HEAD_TYPE]["resources"]
        self.command = [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
            "--port", str(gcs_port), "--temp-dir", str(temp_dir), "--autoscaling-config", str(config_file),
            "--num-cpus", str(int(head.get("CPU", 1))), "--num-gpus", str(int(head.get("GPU", 0))),
            "--include-dashboard", "false", "--disable-usage-stats", "--metrics-export-port", str(metrics_port),
            "--ray-client-server-port", str(free_loopback_port()), "--dashboard-agent-listen-port", str(free_loopback_port()),
            "--node-manager-port", "0", "--object-manager-port", "0", "--object-store-memory", str(200 * 2**20),
        ]

    def start(self) -> None:
        subprocess.run(self.command, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def own_processes(self) -> list[int]:
        """Pids of this cluster's processes: those naming its session folder or its GCS address on their command line
        (this script and the processes that started it name the temp dir too, and are not among them)."""
        marks = (f"{self.temp_dir}/session_".encode(), f"127.0.0.1:{self.gcs_port}".encode(), f"--gcs_server_port={self.gcs_port}".encode())
        ancestors, pid = set(), os.getpid()
        while pid > 1:
            ancestors.add(pid)
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) not in ancestors:
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if any(mark in cmdline for mark in marks):
                    pids.append(int(proc.name))
        return pids

    def raylet_pid(self, node_id: str) -> int | None:
        for pid in self.own_processes():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[0].endswith(b"raylet") and f"--node_id={node_id}".encode() in cmdline:
                return pid
        return None

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.own_processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while self.own_processes() and time.monotonic() < deadline:
                time.sleep(0.5)


def node_type_of(node: dict) -> str:
    resources = node.get("Resources", {})
    if "node:__internal_head__" in resources:
        return "head"
    return "gpu" if resources.get("GPU") else "cpu"


def cluster_state() -> dict:
    """Alive nodes by type, and the heat1d replicas: alive per node type, pending."""
    import ray._private.state as state

    nodes = {n["NodeID"]: n for n in state.nodes() if n["Alive"]}
    state_of = {"head": 0, "gpu": 0, "cpu": 0}
    for node in nodes.values():
        state_of[node_type_of(node)] += 1
    replicas, pending, per_node = {"head": 0, "gpu": 0, "cpu": 0}, 0, {}
    for actor in state.actors().values():
        if not actor.get("ActorClassName", "").endswith(DEPLOYMENT):
            continue
        if actor["State"] == "ALIVE" and actor["Address"]["NodeID"] in nodes:
            replicas[node_type_of(nodes[actor["Address"]["NodeID"]])] += 1
            per_node[actor["Address"]["NodeID"]] = per_node.get(actor["Address"]["NodeID"], 0) + 1
        elif actor["State"] in ("PENDING_CREATION", "DEPENDENCIES_UNREADY", "RESTARTING"):
            pending += 1
    return {"nodes": state_of, "replicas": replicas, "pending": pending, "node_table": nodes, "per_node": per_node}


# --- the experiment -------------------------------------------------------------------------------------------------


async def experiment(cluster: Cluster, server, args) -> tuple[list[dict], dict]:
    loop = asyncio.get_running_loop()
    done, errors, latencies, rows, events = [], [], [], [], {"describe": await replica_describe()}
    print("heat1d replica describe():", events["describe"], flush=True)
    started = time.perf_counter()
    events["_started"] = started
    last = {"t": started, "done": 0, "errors": 0}
    load = {"clients": 0, "task": None, "stop": None}

    def set_load(clients: int):
        if load["task"]:
            load["stop"].set()
        load["clients"], load["stop"] = clients, asyncio.Event()
        load["task"] = asyncio.create_task(offer_load(server.grpc, clients, load["stop"], done, errors, latencies, args.request_timeout)) if clients else None

    async def sample(phase: str) -> dict:
        await asyncio.sleep(2.0)
        s = await loop.run_in_executor(None, cluster_state)
        try:
            target, _ = replica_counts(await loop.run_in_executor(None, server.metrics_text))
        except Exception:
            target = float("nan")
        now = time.perf_counter()
        window = [lat for t, lat in latencies if t > last["t"]]
        row = {
            "t_s": round(now - started, 1), "phase": phase, "clients": load["clients"],
            "head_nodes": s["nodes"]["head"], "gpu_nodes": s["nodes"]["gpu"], "cpu_nodes": s["nodes"]["cpu"],
            "target_replicas": target, "replicas_head": s["replicas"]["head"], "replicas_gpu": s["replicas"]["gpu"],
            "replicas_cpu": s["replicas"]["cpu"], "replicas_pending": s["pending"],
            "throughput_rps": round((len(done) - last["done"]) / (now - last["t"]), 2),
            "p99_s": round(float(np.percentile(window, 99)), 3) if window else float("nan"),
            "completed": len(done), "errors": len(errors),
        }
        last.update(t=now, done=len(done), errors=len(errors))
        rows.append(row)
        print({k: v for k, v in row.items()}, flush=True)
        return row | {"node_table": s["node_table"], "per_node": s["per_node"]}

    def elapsed():
        return time.perf_counter() - started

    # 1. idle: one replica, on the one GPU node its minimum brought up.
    while elapsed() < args.idle:
        await sample("idle")
    # 2. load until a second GPU node serves, then hold.
    set_load(args.clients)
    events["load_on_s"] = elapsed()
    deadline = elapsed() + args.max_wait
    while elapsed() < deadline:
        row = await sample("load")
        if row["target_replicas"] > 1 / GPU_SHARE and "demand_beyond_one_node_s" not in events:
            events["demand_beyond_one_node_s"] = elapsed()  # Serve wants more replicas than one GPU node holds
        if row["gpu_nodes"] > 1 and "second_gpu_node_s" not in events:
            events["second_gpu_node_s"] = elapsed()
        if row["replicas_gpu"] >= GPU_COUNT and row["gpu_nodes"] >= 2:
            events.setdefault("all_replicas_serving_s", elapsed())
            break
    hold_end = elapsed() + args.hold
    while elapsed() < hold_end:
        row = await sample("load")
    steady = {"gpu_nodes": row["gpu_nodes"], "replicas_gpu": row["replicas_gpu"]}
    errors_before_kill = len(errors)
    # 3. lose the GPU node with most heat1d replicas.
    victim = max((n for n in row["node_table"].values() if node_type_of(n) == "gpu"), key=lambda n: row["per_node"].get(n["NodeID"], 0))
    pid = cluster.raylet_pid(victim["NodeID"])
    events["killed_node"] = victim["NodeID"]
    events["killed_node_replicas"] = row["per_node"].get(victim["NodeID"], 0)
    events["killed_raylet_pid"] = pid
    if pid is None:
        raise RuntimeError(f"no raylet found for node {victim['NodeID']}")
    workers = children(pid)  # the node's worker processes, its replicas among them
    events["killed"] = args.kill
    for victim_pid in [pid, *workers] if args.kill == "node" else [pid]:
        try:
            os.kill(victim_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    events["kill_s"] = elapsed()
    asyncio.create_task(note_exit(workers, events, "node_workers_exited_s"))
    before = set(row["node_table"])
    deadline, lost = elapsed() + args.max_wait, False
    while elapsed() < deadline:
        row = await sample("node lost")
        if not lost and (row["gpu_nodes"] < steady["gpu_nodes"] or row["replicas_gpu"] < steady["replicas_gpu"]):
            lost, events["loss_seen_s"] = True, elapsed()
        if row["node_table"].get(victim["NodeID"]) is None and "node_marked_dead_s" not in events:
            events["node_marked_dead_s"] = elapsed()
        replaced = any(node_type_of(n) == "gpu" for node_id, n in row["node_table"].items() if node_id not in before)
        if replaced and "node_replaced_s" not in events:
            events["node_replaced_s"] = elapsed()  # a GPU node that was not there before the loss
        if replaced and row["gpu_nodes"] >= steady["gpu_nodes"] and row["replicas_gpu"] >= steady["replicas_gpu"] and row["replicas_pending"] == 0:
            events["full_service_s"] = elapsed()
            break
    after_end = elapsed() + args.hold
    while elapsed() < after_end:
        await sample("load")
    # 4. no load: replicas go down to one, the autoscaler removes the idle GPU node.
    set_load(0)
    await asyncio.sleep(0)
    events["load_off_s"] = elapsed()
    deadline = elapsed() + args.max_wait
    while elapsed() < deadline:
        row = await sample("idle")
        if row["replicas_gpu"] <= 1 and "replicas_down_s" not in events:
            events["replicas_down_s"] = elapsed()
        if row["gpu_nodes"] <= 1:
            events["node_removed_s"] = elapsed()
            break
    for _ in range(3):
        await sample("idle")
    kill_window = [e for e in errors[errors_before_kill:]]
    events["outcomes"] = outcome_counts(errors)
    events["outcomes_after_kill"] = outcome_counts(kill_window)
    events["completed"] = len(done)
    events["error_examples"] = sorted({e[:200] for e in errors})[:5]
    return rows, events


def children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


async def note_exit(pids: list[int], events: dict, key: str) -> None:
    """Record in `events[key]` when the last of `pids` is gone (a killed raylet's workers exit on their own)."""
    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    while any(alive(pid) for pid in pids):
        await asyncio.sleep(0.2)
    events[key] = time.perf_counter() - events["_started"]


def outcome_counts(errors: list[str]) -> dict:
    counts = {}
    for error in errors:
        status = error.split(":", 1)[0]
        counts[status] = counts.get(status, 0) + 1
    return counts


def summary(events: dict) -> dict:
    """The intervals the report quotes, in seconds, from the event times."""
    def between(a, b):
        return round(events[b] - events[a], 1) if a in events and b in events else None

    return {
        "second_gpu_node_after_load_s": between("load_on_s", "second_gpu_node_s"),
        "demand_beyond_one_node_after_load_s": between("load_on_s", "demand_beyond_one_node_s"),
        "second_gpu_node_after_that_demand_s": between("demand_beyond_one_node_s", "second_gpu_node_s"),
        "all_replicas_serving_after_load_s": between("load_on_s", "all_replicas_serving_s"),
        "node_workers_exited_after_kill_s": between("kill_s", "node_workers_exited_s"),
        "loss_seen_after_kill_s": between("kill_s", "loss_seen_s"),
        "node_marked_dead_after_kill_s": between("kill_s", "node_marked_dead_s"),
        "node_replaced_after_kill_s": between("kill_s", "node_replaced_s"),
        "full_service_after_kill_s": between("kill_s", "full_service_s"),
        "replicas_down_after_load_off_s": between("load_off_s", "replicas_down_s"),
        "gpu_node_removed_after_load_off_s": between("load_off_s", "node_removed_s"),
        "gpu_node_removed_after_its_replicas_left_s": between("replicas_down_s", "node_removed_s"),
    }


def plot(rows: list[dict], events: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    top.step(t, [r["gpu_nodes"] for r in rows], where="post", label="GPU worker nodes", color="tab:red", linewidth=2)
    top.step(t, [r["cpu_nodes"] for r in rows], where="post", label="CPU worker nodes", color="tab:brown", linestyle=":")
    top.step(t, [r["replicas_gpu"] for r in rows], where="post", label=f"{DEPLOYMENT} replicas on GPU nodes", color="tab:blue")
    top.step(t, [r["target_replicas"] for r in rows], where="post", label="Serve's target", color="tab:orange", linestyle="--")
    top.set_ylabel("count")
    top.set_ylim(0, GPU_COUNT + 1.6)
    top.legend(loc="upper right", fontsize=7)
    bottom.plot(t, [r["throughput_rps"] for r in rows], color="tab:green", label="throughput (req/s)")
    bottom.set_ylabel("req/s")
    right = bottom.twinx()
    right.plot(t, [r["p99_s"] for r in rows], color="tab:purple", alpha=0.7, label="p99 latency (s)")
    right.set_ylabel("p99 (s)")
    bottom.fill_between(t, [r["clients"] for r in rows], step="post", color="grey", alpha=0.15, label="clients")
    for ax in (top, bottom):
        for key, label in (("load_on_s", "load on"), ("kill_s", f"{events.get('killed', 'node')} killed"), ("load_off_s", "load off")):
            if key in events:
                ax.axvline(events[key], color="black", linestyle=":", linewidth=0.8)
                if ax is top:
                    ax.text(events[key] + 1, GPU_COUNT + 1.2, label, fontsize=7)
    lines, more = bottom.get_legend_handles_labels(), right.get_legend_handles_labels()
    bottom.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    bottom.set_xlabel("time (s)")
    top.set_title("Ray autoscaler on a simulated cluster: GPU nodes under load, node loss, scale-in")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository", help="the built repository to copy from")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--idle", type=float, default=12, help="seconds of no load first")
    parser.add_argument("--hold", type=float, default=16, help="seconds of steady load before the kill, and after recovery")
    parser.add_argument("--max-wait", type=float, default=240, help="longest wait for each transition")
    parser.add_argument("--request-timeout", type=float, default=60, help="client-side limit: a call past it counts as a hang")
    parser.add_argument("--kill", choices=("node", "raylet"), default="node",
                        help="node: the raylet and its workers at once (a machine gone); raylet: the raylet alone "
                             "(its workers, the replicas, live on until the autoscaler terminates the node)")
    parser.add_argument("--temp-dir", type=Path, default=Path("/tmp/ssca-ray"), help="the cluster's Ray temp dir (its own)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cluster-autoscale-"))
    repository = gpu_repository(args.repository.resolve(), work / "model_repository")
    ports = {"http": free_loopback_port(), "grpc": free_loopback_port(), "metrics": free_loopback_port()}
    gcs_port = free_loopback_port()
    # The environment the launcher gives an embedded Ray, given here to the cluster's nodes: Serve's controller and the
    # replicas read it where they run (deploy/k8s/generate.py sets the same in the pods).
    prepare_environment(ServerSettings(http_port=ports["http"], grpc_port=ports["grpc"]))
    env = {
        **os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "2",
        # Logical CPUs are what the manifests declare; no idle worker processes are started for them ahead of use.
        "RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0", "PYTHONPATH": str(ROOT),
    }
    ray_cluster = rendered_ray_cluster(repository)
    config = simulated_autoscaler_config(ray_cluster, f"127.0.0.1:{gcs_port}")
    cluster = Cluster(config, args.temp_dir, gcs_port, ports["metrics"], env)
    print("node types:", json.dumps({k: {f: v[f] for f in ("resources", "min_workers", "max_workers")} for k, v in config["available_node_types"].items()}))
    print(f"idle_timeout_minutes {config['idle_timeout_minutes']}, upscaling_speed {config['upscaling_speed']}")
    server = None
    started = time.perf_counter()
    try:
        cluster.start()
        import ray

        ray.init(address=cluster.address, namespace="cluster-autoscale", logging_level="WARNING", log_to_driver=False)
        server = start_server(repository, work / "server", env={"STREAMSERVE_RAY_ADDRESS": cluster.address}, timeout_s=args.max_wait + 120, ports=ports)
        ready_s = time.perf_counter() - started
        rows, events = asyncio.run(experiment(cluster, server, args))
        events["cluster_and_application_ready_s"] = round(ready_s, 1)
    finally:
        if server:
            stop_server(server.process)
        try:
            import ray

            ray.shutdown()
        except Exception:
            pass
        cluster.stop()
    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "cluster_autoscale.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = {"summary": summary(events), "events": events, "autoscaler": {k: config[k] for k in ("idle_timeout_minutes", "upscaling_speed", "available_node_types")}}
    (args.output / "cluster_autoscale.json").write_text(json.dumps(result, indent=2, default=str))
    plot(rows, events, args.output / "cluster_autoscale.png")
    print(json.dumps(result["summary"] | {"outcomes": events["outcomes"], "outcomes_after_kill": events["outcomes_after_kill"]}, indent=2))


async def replica_describe() -> dict:
    """What a heat1d replica says it runs on: its describe(), asked through a Serve handle."""
    from ray import serve

    try:
        return await asyncio.wait_for(serve.get_deployment_handle(DEPLOYMENT, app_name="streamserve").describe.remote(), 30)
    except Exception as e:  # the report says so; the run's numbers stand without it
        return {"error": f"{type(e).__name__}: {e}"[:300]}


if __name__ == "__main__":
    main()

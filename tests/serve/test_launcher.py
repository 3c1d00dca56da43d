"""The launcher's environment for Ray: Triton's ports by default, ingress ports that cannot collide, and the
serving processes' allocator settings."""
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from serve.launcher import ALLOCATOR_ENVIRONMENT, check_ports_free, prepare_environment, public_ports
from serve.settings import ServerSettings
from serve.testing import free_port_block


def environment(settings: ServerSettings) -> dict:
    with mock.patch.dict(os.environ, {}, clear=True):
        prepare_environment(settings)
        return dict(os.environ)


def test_one_ingress_replica_listens_on_tritons_ports_with_the_allocator_setting():
    env = environment(ServerSettings())
    assert (env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"], env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == ("8000", "8001")
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT" not in env  # the ingress serves gRPC itself (serve/grpc_ingress.py)
    assert public_ports(ServerSettings(), 8001) == {8080: "metrics", 8001: "gRPC", 8000: "HTTP (ingress replica 1)"}
    assert all(env[key] == value for key, value in ALLOCATOR_ENVIRONMENT.items())


def test_ingress_replicas_share_the_grpc_port_which_their_http_ports_must_not_cover():
    with pytest.raises(SystemExit, match="HTTP ports 8000-8001, which include the gRPC port 8001; set STREAMSERVE_GRPC_PORT to 8002"):
        environment(ServerSettings(ingress_replicas=2))
    settings = ServerSettings(ingress_replicas=2, grpc_port=9000)
    environment(settings)
    assert public_ports(settings, 9000) == {8080: "metrics", 9000: "gRPC", 8000: "HTTP (ingress replica 1)", 8001: "HTTP (ingress replica 2)"}


def test_a_taken_port_of_the_second_ingress_replica_is_refused_at_start_naming_it():
    """Serve would retry the replica that cannot bind for ever while the server waited in silence."""
    http = free_port_block(2)
    grpc = free_port_block(2, avoid={http, http + 1})
    settings = ServerSettings(ingress_replicas=2, http_port=http, grpc_port=grpc, metrics_port=free_port_block(1, avoid={http, http + 1, grpc, grpc + 1}))
    check_ports_free(settings, grpc)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", http + 1))
        taken.listen()
        with pytest.raises(SystemExit, match=f"port {http + 1}, for HTTP \\(ingress replica 2\\), is not free"):
            check_ports_free(settings, grpc)


def _printed_under_allocator(code: str, environment: dict) -> float:
    """The number `code` prints, run in a fresh interpreter whose glibc allocator settings are `environment` alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | environment
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)


def _page_faults_per_reuse(environment: dict) -> float:
    """Minor page faults each time a process allocates, fills and frees an 8 MiB buffer (a model step's temporary)."""
    code = (
        "import resource, numpy as np\n"
        "for _ in range(3): np.ones(1 << 20)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20): np.ones(1 << 20)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)\n"
    )
    return _printed_under_allocator(code, environment)


def test_the_serving_allocator_reuses_a_freed_step_buffer_instead_of_faulting_it_in_again():
    assert _page_faults_per_reuse(ALLOCATOR_ENVIRONMENT) < 50
    # the fixed mmap threshold alone (trim threshold back at 128 KiB) hands the buffer back and faults its pages in again (hundreds per reuse)
    assert _page_faults_per_reuse({"MALLOC_MMAP_THRESHOLD_": ALLOCATOR_ENVIRONMENT["MALLOC_MMAP_THRESHOLD_"]}) > 200


def test_the_public_grpc_port_binds_where_http_binds_unless_serves_proxy_serves_it_in_plaintext():
    from serve.launcher import grpc_host
    from serve.settings import ServerSettings

    assert grpc_host(ServerSettings()) == "127.0.0.1"  # direct ingress, the default: the ingress's own server
    assert grpc_host(ServerSettings(http_host="::")) == "[::]"
    assert grpc_host(ServerSettings(direct_ingress=False)) == "[::]"  # Serve's proxy has no host option
    assert grpc_host(ServerSettings(direct_ingress=False, tls_certfile="c.pem", tls_keyfile="k.pem")) == "127.0.0.1"  # the terminator's


def _resident_mb_after_a_thread_freed_blocks(environment: dict) -> float:
    """Resident MB left in a process after a worker thread (a model's compute thread: its own glibc arena) made and
    freed four 26 MB blocks, a 64-member FNO ensemble's temporaries."""
    code = (
        "import threading, psutil, numpy as np\n"
        "def work():\n"
        "    blocks = [np.ones(26 * 2**20 // 8) for _ in range(4)]\n"
        "    del blocks\n"
        "before = psutil.Process().memory_info().rss\n"
        "thread = threading.Thread(target=work); thread.start(); thread.join()\n"
        "print((psutil.Process().memory_info().rss - before) / 2**20)\n"
    )
    return _printed_under_allocator(code, environment)


def test_large_blocks_freed_by_a_compute_thread_go_back_to_the_system():
    assert _resident_mb_after_a_thread_freed_blocks(ALLOCATOR_ENVIRONMENT) < 16
    # at a 32 MiB threshold the blocks come from the thread's heaps and stay resident once freed
    assert _resident_mb_after_a_thread_freed_blocks(ALLOCATOR_ENVIRONMENT | {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}) > 40


def test_private_ports_are_chosen_outside_the_kernels_ephemeral_range():
    """Ray's processes take ephemeral ports for their connections while the server starts; a port picked there can be
    gone by the time Serve's proxy binds it."""
    from serve.launcher import free_loopback_port

    low, _ = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {free_loopback_port() for _ in range(20)}
    assert all(port < low for port in ports) and len(ports) > 1

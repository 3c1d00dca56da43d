"""Server settings: typed, each overridable by a `STREAMSERVE_<FIELD>` environment variable.

The same values reach `make serve`, the generated Serve config and the replicas (which read the
environment Ray gives them), so there is one place a default is written.
"""
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMSERVE_", extra="ignore")

    repository: str = "model_repository"
    """Folder of the model repository (Triton layout)."""
    http_host: str = "127.0.0.1"
    """HTTP bind address, and gRPC's (with direct ingress or TLS; Serve's plaintext gRPC proxy binds every interface).
    Loopback by default: exposing the server is a deliberate choice ("::" for every interface, IPv4 and IPv6)."""
    http_port: int = 8000
    grpc_port: int = 8001
    """Triton's, so its clients' defaults reach us. With direct ingress, replica i of `ingress_replicas` listens on
    http_port + i, and every replica serves gRPC on grpc_port, outside that range (checked at start), on `http_host`."""
    metrics_port: int = 8080
    """Prometheus endpoint of Ray's metrics agent: Serve's metrics and ours."""
    auth_token: str | None = Field(default=None, repr=False)
    """When set, every inference and metadata call needs `Authorization: Bearer <token>` (HTTP header or
    gRPC metadata). When unset, gRPC calls from other hosts are refused (the gRPC port is open to them when the server
    is exposed, or behind Serve's proxy)."""
    tls_certfile: str | None = None
    """PEM certificate (chain); with `tls_keyfile`, the HTTP and gRPC ports speak TLS only. With direct ingress (the
    default) the ingress's own gRPC server does TLS itself (serve/grpc_ingress.py); Serve's gRPC proxy has no TLS
    option, so without direct ingress a terminator stands in front of it (serve/tls.py; in Kubernetes,
    deploy/k8s/README.md)."""
    tls_keyfile: str | None = Field(default=None, repr=False)
    """PEM private key for `tls_certfile`."""
    admission_check: str | None = None
    """`models.<family>.<module>:<function>` run on every model version before it is served (serve/admission.py),
    e.g. the backdoor scanner; refused versions are listed UNAVAILABLE with the reason."""
    max_request_bytes: int = 64 * 2**20
    """Largest accepted request body or gRPC message (each message of a stream)."""
    max_response_bytes: int = 64 * 2**20
    """Largest unary response the server assembles (a rollout of every step): past it the request is refused and
    pointed at the streaming calls, which send one step at a time."""
    shared_memory_max_regions: int = 64
    """System shared memory regions registered at once, every caller's together (Triton's extension,
    serve/shared_memory.py); each holds one open descriptor."""
    shared_memory_max_bytes: int = 2**30
    """Total size of the registered regions; also the most one request may read from shared memory, its inputs together."""
    request_timeout_s: float = 60.0
    """Serve's end-to-end limit per request (504 / DEADLINE_EXCEEDED past it)."""
    ingress_replicas: int = 1
    ingress_max_ongoing_requests: int = 256
    """Requests one ingress replica holds at once (all models it hosts together); Serve refuses more (503)."""
    ingress_num_cpus: float = 0.2
    model_num_cpus: float = 0.05
    """CPU share reserved by each model replica; also sizes its intra-op thread pool (at least one thread).
    Small by default so a 2-core machine holds every model of the repository (~25 deployments, most idle
    at any moment: a replica that cannot be scheduled would keep the whole application from starting)."""
    direct_ingress: bool = True
    """Serve's throughput-optimised direct ingress (the ingress replica listens itself, ~4x faster here);
    False runs Serve's classic proxy in front, as `serve run` does."""
    temp_dir: str = "/tmp/streamserve"
    ray_address: str | None = None
    """Deploy onto this running Ray cluster (`host:port` of its GCS, as `ray start --head` prints) instead of starting
    Ray embedded: its nodes, its autoscaler, its metrics ports. Its nodes must run with the environment
    `serve.launcher.prepare_environment` sets (Serve's controller and the replicas read it there, not from this
    process); loadtest/cluster_autoscale.py starts such a cluster, deploy/k8s/ renders it for KubeRay."""
    model_control: bool = True
    """Triton's model repository extension: load and unload models while serving (serve/model_control.py), with the
    same authentication as every other call. False: the index alone is served, load and unload answer UNIMPLEMENTED."""
    model_load_timeout_s: float = 120.0
    """How long a load (reading the folder, the admission check, building the runtime) may take before it is answered
    with an error; the previous state is kept."""

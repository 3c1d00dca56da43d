"""Model handlers: a model family's own pre/post-processing around its exported files.

This is Triton's Python backend without code in the repository: a model folder declares

    backend: "python"
    parameters { key: "handler" value { string_value: "models.iqa.serving:IqaHandler" } }

and the version folder holds only data (ONNX files, a graph snapshot, JSON). The handler is imported
from this installed package, never from the repository (serve/families.py). Its other parameters are typed:
the class's `Params` (serve/params.py) is checked when the repository loads, and `self.params` holds them parsed.

A handler is a runtime with two more hooks:
- `preprocess` runs once per request in the model replica, before the batch queue (decode an image,
  gather a subgraph); raising `InvalidInput` there fails that request alone, never the batch it would
  have joined.
- `stream` answers one request of a decoupled model (`model_transaction_policy { decoupled: true }`)
  with several responses: per-segment results, job progress then the verdict. It runs in a worker
  thread; each yielded dict is sent as soon as it is produced. A response may carry a subset of the
  declared outputs (progress messages need not repeat the result tensors).
- `load_snapshot`, for a handler that answers from a data file named by config.pbtxt's `snapshot` parameter
  (a hosted graph): a new file is swapped into running replicas without a restart (ModelWorker.reconfigure).
"""
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import Overloaded, RepositoryError
from ..families import resolve
from ..params import HandlerParams, parse
from .base import Runtime


class ModelHandler(Runtime):
    """Base class. `model_dir` is the version folder; `params` are config.pbtxt's parameters, parsed into `Params`."""

    Params: type[HandlerParams] = HandlerParams
    """The handler's own config.pbtxt parameters with their types, defaults and bounds (none by default)."""

    placement = "dedicated"
    """Where the model runs unless its config says otherwise (serve/serve_config.py): "ingress" for a handler whose
    requests are light (a lookup, a small decode and an ONNX call), so they run where they land; "dedicated" (a
    deployment of its own) for jobs, subprocesses and heavy work that should not share the ingress's cores."""

    pool: str | None = None
    """For a dedicated handler: the name of a pool deployment (`pool_<name>`) it shares with others that need their
    own process but not one each (a family's heavy handlers; the jobs). None: a deployment of its own."""

    snapshot = None
    """The data snapshot in service, for handlers that serve one. A request reads it once (`graph = self.snapshot`)
    and uses only that, so a request in flight during a swap finishes on the snapshot it started with."""
    snapshot_name: str | None = None

    def __init__(self, model_dir: Path, params: dict[str, str], input_names, output_names, num_threads: int, device: str):
        super().__init__(model_dir, input_names, output_names, num_threads, device)
        # numpy's BLAS sized to the replica's CPU share, as the runtimes size theirs: OpenBLAS's default is every core
        # of the node, which oversubscribes a node of packed replicas, and its idle threads spin after each product.
        threadpool_limits(self.num_threads, user_api="blas")
        self.model_dir = Path(model_dir)
        self.params = parse(self.Params, params, f"{self.model_dir.parent.name}/config.pbtxt")

    def load_snapshot(self, path: Path):
        """Build a snapshot from its file, completely, and return it (called in a worker thread while the old
        snapshot keeps answering)."""
        raise NotImplementedError(f"{type(self).__name__} does not serve a data snapshot")

    def use_snapshot(self, name: str) -> None:
        """Load the version folder's file `name` and put it in service."""
        self.snapshot = self.load_snapshot(self.model_dir / name)
        self.snapshot_name = name

    def describe(self) -> dict:
        return super().describe() | ({"snapshot": self.snapshot_name} if self.snapshot_name else {})

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request's inputs as the batched `infer` wants them; the default passes them through."""
        return inputs

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} does not answer single requests; it is a streaming model")

    def stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Decoupled models: the responses to one request, in order. Default: the one `infer` answer."""
        yield self.infer(inputs)


def handler_class(path: str) -> type[ModelHandler]:
    """The handler class `models.<family>.<module>:<Class>` names; anything else is refused."""
    cls = resolve(path, "handler")
    if not (isinstance(cls, type) and issubclass(cls, ModelHandler)):
        raise RepositoryError(f"handler {path!r} is not a ModelHandler (serve.sdk)")
    return cls


class JobSlots:
    """At most `limit` long jobs of a handler at once (scans, fits, video analyses, each with a large working set):
    one more is refused at once with `Overloaded` naming the parameter that sets the limit, never queued in memory.

        with self.slots.held():   # in `stream`, around the whole job: released when the job ends or its client leaves
            yield from self._work(inputs)
    """

    def __init__(self, limit: int, what: str, parameter: str):
        self.limit, self.what, self.parameter = limit, what, parameter
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def held(self):
        if not self._free.acquire(blocking=False):
            raise Overloaded(f"this replica is already running {self.limit} {self.what}, the limit set by its parameter "
                             f"{self.parameter}; retry later")
        try:
            yield
        finally:
            self._free.release()

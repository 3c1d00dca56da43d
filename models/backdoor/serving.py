"""`backdoor_scan`: a decoupled (streaming) handler that scans an uploaded ONNX classifier for backdoors.

Request: `MODEL` BYTES [1] (ONNX file bytes), optional `CLEAN_IMAGES` FP32 [N, C, H, W] in [0, 1]
(else the platform-held set `clean_reference.npy` of the version folder: 100 digits, [1, 16, 16]).
Responses: progress (`STAGE` BYTES [1], `PROGRESS` FP32 [1]) while the scan runs, then the verdict
(`VERDICT`, `ANOMALY_INDEX`, `SUSPECTED_TARGET`, `TRIGGER_MASK_PNG`, `TRIGGER_PATTERN_PNG`, `STRIP`, `REPORT`).
The scan runs in a separate process with memory / CPU / wall-clock limits (jobs.py); the model is checked
here first (onnx_guard, all but `onnx.checker`, which runs only in the scan process's empty working directory)
so that refusals come back as InvalidInput before any process starts. A replica runs at most
`max_concurrent_scans` scans (config.pbtxt parameter, default 1: each may take `memory_mb`, 3 GiB); one more is
refused with Overloaded (503 / RESOURCE_EXHAUSTED). A client that leaves has its scan's process group killed.
No torch here: the served path is onnx + numpy + a subprocess.
"""
import base64
import json
import threading
from contextlib import closing

import numpy as np

from serve.errors import InvalidInput, Overloaded, RepositoryError
from serve.runtimes.python import ModelHandler

from .jobs import Limits, run_scan
from .onnx_guard import MAX_BYTES, Refused, check, image_shape

MIN_CLEAN, MAX_CLEAN = 8, 512


def _bytes(value: str) -> np.ndarray:
    return np.array([value.encode()], dtype=object)


def _positive_int(params: dict, name: str, default: int) -> int:
    value = params.get(name, str(default))
    if not value.strip().isdigit() or int(value) < 1:
        raise RepositoryError(f"config.pbtxt parameter {name!r}: expected an integer ≥ 1, got {value!r}")
    return int(value)


class BackdoorScanHandler(ModelHandler):
    pool = "jobs"  # a scan runs in a subprocess for minutes: outside the ingress, beside the other jobs

    def __init__(self, model_dir, params, input_names, output_names, num_threads, device):
        super().__init__(model_dir, params, input_names, output_names, num_threads, device)
        self.max_bytes = int(self.params.get("max_model_bytes", MAX_BYTES))
        self.limits = Limits(memory_mb=int(self.params.get("memory_mb", 3072)), cpu_seconds=int(self.params.get("cpu_seconds", 240)),
                             wall_seconds=float(self.params.get("wall_seconds", 300)), steps=int(self.params.get("steps", 200)))
        self.clean = np.load(self.model_dir / "clean_reference.npy", allow_pickle=False).astype(np.float32)
        self.max_scans = _positive_int(self.params, "max_concurrent_scans", 1)
        self.scan_slots = threading.BoundedSemaphore(self.max_scans)

    def preprocess(self, inputs):
        raw = inputs.get("MODEL")
        if raw is None or np.asarray(raw, dtype=object).size != 1:
            raise InvalidInput("input 'MODEL': expected one BYTES element holding an ONNX file")
        data = np.asarray(raw, dtype=object).ravel()[0]
        data = data.encode() if isinstance(data, str) else bytes(data)
        try:
            model = check(data, self.max_bytes, run_checker=False)
            c, h, w = image_shape(model)
        except Refused as e:
            raise InvalidInput(f"input {e.message} [{e.kind}]") from None
        clean = inputs.get("CLEAN_IMAGES")
        if clean is None:
            if self.clean.shape[1:] != (c, h, w):
                raise InvalidInput(f"input 'CLEAN_IMAGES': the model takes [N, {c}, {h}, {w}] images and the platform-held "
                                   f"clean set is {list(self.clean.shape[1:])}; send {MIN_CLEAN}–{MAX_CLEAN} clean images of the model's shape")
            clean = self.clean
        else:
            clean = np.asarray(clean)
            if clean.dtype != np.float32 or clean.ndim != 4 or tuple(clean.shape[1:]) != (c, h, w):
                raise InvalidInput(f"input 'CLEAN_IMAGES': expected FP32 [N, {c}, {h}, {w}] (the model's input shape), got {clean.dtype} {list(clean.shape)}")
            if not (MIN_CLEAN <= len(clean) <= MAX_CLEAN):
                raise InvalidInput(f"input 'CLEAN_IMAGES': expected {MIN_CLEAN} to {MAX_CLEAN} images, got {len(clean)}")
            if not np.isfinite(clean).all() or clean.min() < 0 or clean.max() > 1:
                raise InvalidInput("input 'CLEAN_IMAGES': expected finite values in [0, 1]")
        return {"MODEL": data, "CLEAN_IMAGES": clean}

    def stream(self, inputs):
        if not self.scan_slots.acquire(blocking=False):
            raise Overloaded(f"backdoor_scan: this replica is already running {self.max_scans} scan(s), the limit set by "
                             "its parameter max_concurrent_scans; retry later")
        try:
            yield from self._scan(inputs)
        finally:
            self.scan_slots.release()

    def _scan(self, inputs):
        if not isinstance(inputs.get("MODEL"), bytes):  # a worker without the preprocess hook
            inputs = self.preprocess(inputs)
        # closing(): the scan's process group is killed as soon as this generator is closed, not when it is collected
        with closing(run_scan(inputs["MODEL"], inputs["CLEAN_IMAGES"], self.limits)) as events:
            for event in events:
                kind = event.get("event")
                if kind == "progress":
                    yield {"STAGE": _bytes(event["stage"]), "PROGRESS": np.array([event["progress"]], np.float32)}
                elif kind == "refused":
                    raise InvalidInput(f"input {event['message']} [{event['kind']}]")
                elif kind == "error":
                    raise InvalidInput(f"input 'MODEL': {event['message']}")
                elif kind == "result":
                    report = {k: v for k, v in event.items() if k not in ("mask_png", "pattern_png", "event")}
                    yield {
                        "STAGE": _bytes("done"), "PROGRESS": np.array([1.0], np.float32),
                        "VERDICT": _bytes(event["verdict"]),
                        "ANOMALY_INDEX": np.asarray(event["anomaly_index"], np.float32),
                        "SUSPECTED_TARGET": np.array([event["suspected_target"]], np.int64),
                        "TRIGGER_MASK_PNG": np.array([base64.b64decode(event["mask_png"])], dtype=object),
                        "TRIGGER_PATTERN_PNG": np.array([base64.b64decode(event["pattern_png"])], dtype=object),
                        "STRIP": _bytes(json.dumps(event["strip"])),
                        "REPORT": _bytes(json.dumps(report)),
                    }

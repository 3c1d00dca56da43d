"""`backdoor_scan`: a decoupled (streaming) handler that scans an uploaded ONNX classifier for backdoors.

Request: `MODEL` BYTES [1] (ONNX file bytes), optional `CLEAN_IMAGES` FP32 [N, C, H, W] in [0, 1]
(else the platform-held set `clean_reference.npy` of the version folder: 100 digits, [1, 16, 16]). On the
platform-held set the verdict is the fused score calibrated on the scanner zoo (scanner.json, models/backdoor/zoo.py);
on a client's own images, Neural Cleanse's anomaly index > 2 (`REPORT` names the rule: `verdict_rule`).
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
from contextlib import closing

import numpy as np

from pydantic import Field

from serve.sdk import HandlerParams, InvalidInput, JobSlots, ModelHandler, bytes_tensor, json_tensor, one_bytes

from .jobs import Limits, run_scan
from .onnx_guard import MAX_BYTES, Refused, check, image_shape

MIN_CLEAN, MAX_CLEAN = 8, 512


_LIMITS = Limits()


class ScanParams(HandlerParams):
    """config.pbtxt parameters of `backdoor_scan` (models/backdoor/export.py writes them from these defaults)."""

    max_model_bytes: int = Field(MAX_BYTES, ge=1, le=1 << 30, description="size of an uploaded ONNX file")
    steps: int = Field(_LIMITS.steps, ge=1, le=1_000_000, description="trigger-reverse-engineering steps per class")
    memory_mb: int = Field(_LIMITS.memory_mb, ge=256, description="address-space limit of the scan process")
    cpu_seconds: int = Field(_LIMITS.cpu_seconds, ge=1, description="CPU-time limit of the scan process")
    wall_seconds: float = Field(_LIMITS.wall_seconds, gt=0, description="wall-clock limit of a scan")
    max_concurrent_scans: int = Field(1, ge=1, le=64, description="scans one replica runs at once; one more is refused (503)")


class BackdoorScanHandler(ModelHandler):
    pool = "jobs"  # a scan runs in a subprocess for minutes: outside the ingress, beside the other jobs

    Params = ScanParams

    def __init__(self, model_dir, params, input_names, output_names, num_threads, device):
        super().__init__(model_dir, params, input_names, output_names, num_threads, device)
        p = self.params
        self.max_bytes, self.max_scans = p.max_model_bytes, p.max_concurrent_scans
        self.limits = Limits(memory_mb=p.memory_mb, cpu_seconds=p.cpu_seconds, wall_seconds=p.wall_seconds, steps=p.steps)
        self.clean = np.load(self.model_dir / "clean_reference.npy", allow_pickle=False).astype(np.float32)
        # The fused verdict's constants, measured on exactly these reference images (scanner.json, export.py)
        self.calibration = json.loads((self.model_dir / "scanner.json").read_text()).get("fused")
        self.scan_slots = JobSlots(self.max_scans, "scan(s)", "max_concurrent_scans")

    def preprocess(self, inputs):
        data = one_bytes(inputs, "MODEL", "an ONNX file")
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
            clean = None  # the platform-held set, with the fused verdict (_scan)
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
        with self.scan_slots.held():
            yield from self._scan(inputs)

    def _scan(self, inputs):
        if not isinstance(inputs.get("MODEL"), bytes):  # a worker without the preprocess hook
            inputs = self.preprocess(inputs)
        # closing(): the scan's process group is killed as soon as this generator is closed, not when it is collected
        clean, calibration = inputs["CLEAN_IMAGES"], None
        if clean is None:
            clean, calibration = self.clean, self.calibration
        with closing(run_scan(inputs["MODEL"], clean, self.limits, calibration)) as events:
            for event in events:
                kind = event.get("event")
                if kind == "progress":
                    yield {"STAGE": bytes_tensor(event["stage"]), "PROGRESS": np.array([event["progress"]], np.float32)}
                elif kind == "refused":
                    raise InvalidInput(f"input {event['message']} [{event['kind']}]")
                elif kind == "error":
                    raise InvalidInput(f"input 'MODEL': {event['message']}")
                elif kind == "result":
                    report = {k: v for k, v in event.items() if k not in ("mask_png", "pattern_png", "event")}
                    yield {
                        "STAGE": bytes_tensor("done"), "PROGRESS": np.array([1.0], np.float32),
                        "VERDICT": bytes_tensor(event["verdict"]),
                        "ANOMALY_INDEX": np.asarray(event["anomaly_index"], np.float32),
                        "SUSPECTED_TARGET": np.array([event["suspected_target"]], np.int64),
                        "TRIGGER_MASK_PNG": bytes_tensor(base64.b64decode(event["mask_png"])),
                        "TRIGGER_PATTERN_PNG": bytes_tensor(base64.b64decode(event["pattern_png"])),
                        "STRIP": json_tensor(event["strip"]),
                        "REPORT": json_tensor(report),
                    }

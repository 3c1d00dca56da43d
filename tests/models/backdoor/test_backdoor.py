"""Backdoor family: data and trigger geometry, DC distillation, the two attacks' mechanics, the ONNX guard's
refusals, the graph interpreter's parity, the scanner on a planted-trigger model, and the streaming handler."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from models.backdoor.data import Trigger, load, poison_indices, stamp
from models.backdoor.distill import Config, cta_asr, distill, optimise_trigger, train_on
from models.backdoor.graph_torch import OnnxGraph
from models.backdoor.model import make
from models.backdoor.onnx_guard import Refused, check
from models.backdoor.population import to_onnx, train_direct
from models.backdoor.scanner import ScanConfig, anomaly_indices, scan

torch.set_num_threads(1)
WHITE = np.ones((1, 16, 16), np.float32)


@pytest.fixture(scope="module")
def data():
    return load()


@pytest.fixture(scope="module")
def planted(data):
    """A ConvNet trained on digits with 10 % carrying a 3×3 white patch relabelled to 7."""
    return train_direct(Trigger(3, 1, "br", 7), 0.1, 0, steps=180, data=data)


def test_splits_and_trigger_geometry(data):
    assert [len(data[s]["label"]) for s in ("train", "val", "test")] == [1100, 300, 397]
    assert data["train"]["image"].shape[1:] == (1, 16, 16) and 0 <= data["train"]["image"].min() <= data["train"]["image"].max() <= 1
    m = Trigger(2, 1, "br").mask()
    assert m.sum() == 4 and m[0, 13:15, 13:15].all()
    assert Trigger(3, 2, "tl").mask()[0, 2:5, 2:5].all()
    idx = poison_indices(data["train"]["label"], 0, 0.1, np.random.default_rng(0))
    assert len(idx) == 110 and (data["train"]["label"][idx] != 0).all()
    x = stamp(data["train"]["image"][:3], m, 1.0)
    assert (x[:, 0, 13:15, 13:15] == 1).all() and np.array_equal(x[:, 0, :13], data["train"]["image"][:3, 0, :13])


def test_dc_distillation_learns_something(data):
    cfg = Config(iterations=4, outer_loop=2, inner_loop=1, batch_real=32, eval_steps=80, init="noise")
    out = distill("none", 0, cfg, data=data)
    assert out["images"].shape == (100, 1, 16, 16) and (out["labels"] == np.repeat(np.arange(10), 10)).all()
    cta, _ = cta_asr(train_on(out["images"], out["labels"], "convnet", 0, cfg), data["test"], out["mask"], out["pattern"], 0)
    noise = distill("none", 0, Config(iterations=0, init="noise"), data=data)  # the same noise initialisation, not distilled
    cta0, _ = cta_asr(train_on(noise["images"], noise["labels"], "convnet", 0, cfg), data["test"], out["mask"], out["pattern"], 0)
    assert cta > max(cta0, 0.1) + 0.08, (cta, cta0)  # four iterations of gradient matching already carry class information


def test_doorping_trigger_step_raises_selected_neurons_and_stays_in_the_patch(data):
    torch.manual_seed(0)
    net = make("convnet")
    mask = torch.from_numpy(Trigger().mask())
    pattern = torch.rand(1, 16, 16) * mask
    x = torch.from_numpy(data["train"]["image"][:32])
    neurons = net.fc1.weight.abs().sum(1).topk(8).indices
    before = net.penultimate(stamp(x, mask, pattern))[:, neurons].mean().item()
    for clamp in (False, True):  # the authors' unconstrained trigger, and one kept in the pixel range
        new = optimise_trigger(net, x, mask, pattern, Config(trigger_steps=30, trigger_stop=0.0, trigger_clamp=clamp))
        after = net.penultimate(stamp(x, mask, new))[:, neurons].mean().item()
        assert after > before and torch.equal(new * (1 - mask), pattern * (1 - mask))
        assert (0 <= new.min() and new.max() <= 1) if clamp else new.max() > 1


def test_poisoned_training_gives_high_asr_and_clean_low(data, planted):
    clean = train_direct(None, 0.0, 0, steps=180, data=data)
    t = Trigger(3, 1, "br", 7)
    cta_p, asr_p = cta_asr(planted, data["test"], t.mask(), WHITE, 7)
    cta_c, asr_c = cta_asr(clean, data["test"], t.mask(), WHITE, 7)
    assert cta_p > 0.85 and cta_c > 0.85 and asr_p > 0.8 and asr_c < 0.2


def test_graph_interpreter_matches_onnxruntime(planted, data):
    b = to_onnx(planted)
    x = data["test"]["image"][:16]
    ours = OnnxGraph(onnx.load_from_string(b))(torch.from_numpy(x)).detach().numpy()
    ref = ort.InferenceSession(b, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert np.allclose(ours, ref, atol=1e-4)


def test_anomaly_index_flags_the_small_outlier():
    idx = anomaly_indices(np.array([30, 31, 29, 32, 30, 28, 31, 5.0, 30, 29]))
    assert idx.argmax() == 7 and idx[7] > 2 and (np.delete(idx, 7) < 2).all()


def test_scanner_finds_planted_trigger(planted, data):
    result = scan(onnx.load_from_string(to_onnx(planted)), data["val"]["image"][:64], ScanConfig(steps=100))
    assert result["verdict"] == "backdoored" and result["suspected_target"] == 7 and result["verdict_rule"] == "nc_anomaly_index"
    assert result["mask"].shape == (1, 16, 16) and result["strip"]["inputs"] > 0


def test_fused_verdict_on_the_platform_images(planted, data):
    """With the shipped calibration (the platform-held images it was measured on) the verdict is the fused score's:
    the planted model is flagged, and its patch sweep is what pushes it over (a white 3-px square moves most images)."""
    import json

    from models.backdoor.scanner import FusedCalibration
    from models.backdoor.zoo import CALIBRATION, CLEAN_REF

    calibration = FusedCalibration(**json.loads(CALIBRATION.read_text()))
    clean = np.load(CLEAN_REF, allow_pickle=False).astype(np.float32)
    result = scan(onnx.load_from_string(to_onnx(planted)), clean, ScanConfig(steps=100), calibration=calibration)
    fused = result["fused"]
    assert result["verdict_rule"] == "fused" and result["threshold"] == calibration.threshold
    assert fused["score"] == max(fused["z"].values()) > calibration.threshold and result["verdict"] == "backdoored"
    assert fused["patch_sweep"]["changed_max"] > 0.8


# --- the guard: every refusal ---------------------------------------------------------------------------

def _tiny(op="Relu", domain="", opset_domain=""):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])
    w = numpy_helper.from_array(np.zeros((256, 10), np.float32), "w")
    nodes = [helper.make_node(op, ["x"], ["r"], domain=domain), helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(opset_domain, 1)] if opset_domain else [])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=opsets)


def _external(model):
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "/etc/passwd"), ("offset", "0"), ("length", "1024")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return model.SerializeToString()


def _not_image():
    m = _tiny()
    m.graph.input[0].type.tensor_type.shape.dim.pop()
    return m.SerializeToString()


REFUSALS = [
    ("malformed", lambda: b"\x08\x07garbage-not-onnx\xff\xff"),
    ("oversize", lambda: _tiny().SerializeToString() + b"\x00" * 0),
    ("disallowed_op", lambda: _tiny("Sin").SerializeToString()),
    ("custom_op", lambda: _tiny("Relu", "com.evil", "com.evil").SerializeToString()),
    ("external_data", lambda: _external(_tiny())),
    ("not_image_classifier", _not_image),
]


@pytest.mark.parametrize("kind,make_bytes", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_guard_refuses(kind, make_bytes):
    with pytest.raises(Refused) as e:
        check(make_bytes(), max_bytes=500 if kind == "oversize" else 20 << 20)
    assert e.value.kind == kind and "MODEL" in e.value.message


def _sparse_external(where):
    """A sparse tensor whose values are in an external file (a path relative to the working directory), placed
    `where` in the model."""
    values = helper.make_tensor("sparse_values", TensorProto.FLOAT, [1], [0.0])
    values.ClearField("float_data")
    values.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "config.pbtxt"), ("offset", "0"), ("length", "4")):
        e = values.external_data.add()
        e.key, e.value = k, v
    sparse = helper.make_sparse_tensor(values, helper.make_tensor("sparse_indices", TensorProto.INT64, [1], [0]), [4])
    model = _tiny()
    constant = helper.make_node("Constant", [], ["c"], sparse_value=sparse)
    if where == "constant sparse_value":
        model.graph.node.insert(0, constant)
    elif where == "sparse_value in an If branch":
        branch = helper.make_graph([constant], "branch", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])])
        model.graph.node.insert(0, helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("v", TensorProto.BOOL, [], [True])))
        model.graph.node.insert(1, helper.make_node("If", ["cond"], ["o"], then_branch=branch, else_branch=branch))
    elif where == "sparse_tensors attribute":
        model.graph.node[0].attribute.append(helper.make_attribute("extra", [sparse]))
    elif where == "sparse_initializer":
        model.graph.sparse_initializer.append(sparse)
    return model.SerializeToString()


SPARSE_PLACES = ["constant sparse_value", "sparse_value in an If branch", "sparse_tensors attribute", "sparse_initializer"]


@pytest.mark.parametrize("where", SPARSE_PLACES)
def test_guard_refuses_external_data_in_sparse_tensors(where):
    for run_checker in (True, False):  # refused by the guard's own walk, whether or not the checker runs after it
        with pytest.raises(Refused) as e:
            check(_sparse_external(where), run_checker=run_checker)
        assert e.value.kind == "external_data" and "'sparse_values' refers to external data at 'config.pbtxt'" in e.value.message


def test_guard_accepts_an_exported_classifier(planted):
    check(to_onnx(planted))


# --- the served handler (no Ray: the handler class itself) ------------------------------------------------

@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    from models.backdoor.export import NAME, build
    from models.backdoor.serving import BackdoorScanHandler

    root = tmp_path_factory.mktemp("repo")
    build(root)
    params = {"steps": "40", "wall_seconds": "120"}
    return BackdoorScanHandler(root / NAME / "1", params, ["MODEL", "CLEAN_IMAGES"], [], 1, "cpu")


@pytest.mark.parametrize("kind,make_bytes", REFUSALS[:1] + REFUSALS[2:], ids=[r[0] for r in REFUSALS[:1] + REFUSALS[2:]])
def test_handler_refusals_are_invalid_input(handler, kind, make_bytes):
    from serve.errors import InvalidInput

    with pytest.raises(InvalidInput, match=kind):
        handler.preprocess({"MODEL": np.array([make_bytes()], dtype=object)})


def test_handler_refuses_oversize_and_bad_clean_images(handler, planted):
    from serve.errors import InvalidInput

    big = np.array([b"\x00" * (handler.max_bytes + 1)], dtype=object)
    with pytest.raises(InvalidInput, match="oversize"):
        handler.preprocess({"MODEL": big})
    with pytest.raises(InvalidInput, match="CLEAN_IMAGES"):
        handler.preprocess({"MODEL": np.array([to_onnx(planted)], dtype=object), "CLEAN_IMAGES": np.zeros((10, 3, 16, 16), np.float32)})


def test_handler_streams_progress_then_verdict(handler, planted):
    inputs = handler.preprocess({"MODEL": np.array([to_onnx(planted)], dtype=object)})
    responses = list(handler.stream(inputs))
    assert len(responses) >= 3 and all("PROGRESS" in r for r in responses)
    final = responses[-1]
    assert final["VERDICT"][0] in (b"clean", b"backdoored") and final["ANOMALY_INDEX"].shape == (10,)
    assert final["SUSPECTED_TARGET"].dtype == np.int64 and final["TRIGGER_MASK_PNG"][0].startswith(b"\x89PNG")


def test_scan_process_is_stopped_at_its_wall_clock_limit(planted, data):
    from models.backdoor.jobs import Limits, scan_once

    event = scan_once(to_onnx(planted), data["val"]["image"][:16], Limits(wall_seconds=2, steps=100))
    assert event["event"] == "error" and "wall-clock" in event["message"]

def test_tiny_doorping_backdoor_beats_a_clean_distillation(data):
    """The issue's "ASR clearly above a clean model's on tiny runs", for DOORPING: one DC iteration (QUICK: outer/inner
    loop 10/10, 9 trigger updates of ≤ 100 steps, real-image initialisation from the poisoned set). The clean distilled model is scored with the same
    (DOORPING) trigger, so the margin is not an artefact of the trigger's out-of-range pixel values. NAIVEATTACK is
    not asserted: with a white [0, 1] patch its ASR stays near a clean model's even on the full runs (README)."""
    from models.backdoor.distill import QUICK

    cfg = QUICK
    clean, door = distill("none", 0, cfg, data=data), distill("doorping", 0, cfg, data=data)
    cta_c, asr_c = cta_asr(train_on(clean["images"], clean["labels"], "convnet", 0, cfg), data["test"], door["mask"], door["pattern"], 0)
    cta_d, asr_d = cta_asr(train_on(door["images"], door["labels"], "convnet", 0, cfg), data["test"], door["mask"], door["pattern"], 0)
    assert asr_d > 0.8 and asr_d > asr_c + 0.5 and cta_d > 0.5, (asr_d, asr_c, cta_d, cta_c)

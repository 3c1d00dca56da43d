"""Export of a tiny KNO: the served TorchScript trace and the portable ONNX graph (dynamo exporter), each at
parity with PyTorch at batch and grid sizes other than the ones exported with, and a config that the
repository loader accepts as a rollout model."""
import io

import numpy as np
import pytest
import torch

from models.koopman.export import export_one_step, served_model, parity, script_one_step, torchscript_parity
from export.repository import write_model
from models.koopman.kno import KNO
from serve.repository import load_model


def test_tiny_kno_exports_with_dynamic_batch_and_grid(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = KNO(t_in=4, width=4, modes=4, depth=1, dims=1).eval()
    onnx_bytes = export_one_step(model, torch.randn(2, 4, 32))
    rng = np.random.default_rng(0)
    errors = parity(model, onnx_bytes, [rng.standard_normal((b, 4, n)).astype(np.float32) for b, n in [(1, 32), (3, 8), (5, 100)]])
    assert set(errors) == {"32", "8", "100"}
    assert max(e for grid in errors.values() for e in grid.values()) < 1e-5

    folder = write_model(tmp_path, "kno_tiny", served_model("kno_tiny", 4, 1, 1, 0.02, min_grid=8, platform="onnxruntime_onnx").config_pbtxt(),
                         {1: ("model.onnx", onnx_bytes)}, "# tiny")
    spec = load_model(folder)
    assert spec.decoupled and spec.rollout.state == {"WINDOW_NEXT": "WINDOW"} and spec.rollout.steps_input == "STEPS"
    assert spec.rollout.max_steps == 200
    assert spec.max_batch_size == 8 and spec.dynamic_batching  # concurrent rollouts share batches
    assert {t.name: t.dims for t in spec.inputs if not t.optional} == {"WINDOW": (4, -1), "STEPS": (1,)}
    assert {t.name: t.dims for t in spec.outputs} == {"FRAMES": (1, -1), "WINDOW_NEXT": (4, -1), "FRAMES_MEAN": (1, -1), "FRAMES_SPREAD": (1, -1)}
    assert spec.rollout.ensemble.outputs == ("FRAMES",) and spec.rollout.ensemble.max_members == 64
    assert spec.min_shapes == {"WINDOW": (1, 4, 8)} and spec.reject_non_finite
    params = {k: v.string_value for k, v in spec.config.parameters.items()}
    assert params["info.dt"] == "0.02"


def test_tiny_2d_kno_traces_to_torchscript_that_takes_other_batches_and_grids(tmp_path):
    from serve.replica import ModelWorker

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = KNO(t_in=3, width=4, modes=4, depth=2, dims=2).eval()
    script = script_one_step(model, torch.randn(2, 3, 16, 16))
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal(shape).astype(np.float32) for shape in [(1, 3, 16, 16), (3, 3, 8, 8), (2, 3, 24, 12)]]
    errors = torchscript_parity(model, script, windows)
    assert set(errors) == {"16x16", "8x8", "24x12"} and max(max(e.values()) for e in errors.values()) < 1e-5

    folder = write_model(tmp_path, "kno_tiny2d", served_model("kno_tiny2d", 3, 1, 2, 1.0, min_grid=8).config_pbtxt(), {1: ("model.pt", script)}, "# tiny")
    spec = load_model(folder)
    assert spec.platform == "pytorch_libtorch" and spec.decoupled
    worker = ModelWorker(str(tmp_path), "kno_tiny2d", 1)
    out = worker.runtime.infer({"WINDOW": windows[2]})
    with torch.no_grad():
        frames = model.predict(torch.from_numpy(windows[2]))
    np.testing.assert_allclose(out["FRAMES"], frames.numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["WINDOW_NEXT"][:, -1:], out["FRAMES"])


@pytest.mark.parametrize("dims, grids", [(2, [(1, 16, 16), (3, 8, 8), (4, 24, 12)]), (1, [(1, 32), (5, 10)])])
def test_fno_traces_to_the_served_mode_mixing_at_every_batch(dims, grids):
    """The FNO's served trace uses the batched mode mixing (both corners' matrices are constants of the trace) and
    equals its eager forward at one row (broadcast form) and several (batched GEMM), at grids other than the traced one."""
    from models.koopman.fno import FNO

    torch.set_num_threads(1)
    torch.manual_seed(dims)
    model = FNO(t_in=3, width=5, modes=4, layers=2, dims=dims).eval()
    script = script_one_step(model, torch.randn(2, 3, *grids[0][1:]))
    assert all(m.served_matrices is None for m in model.spectral)  # the trace's constants do not stay on the model
    rng = np.random.default_rng(dims)
    windows = [rng.standard_normal((b, 3, *grid)).astype(np.float32) for b, *grid in grids]
    errors = torchscript_parity(model, script, windows)
    assert len(errors) == len(grids) and max(max(e.values()) for e in errors.values()) < 1e-5
    assert "bmm" in str(torch.jit.load(io.BytesIO(script)).inlined_graph)


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("modes", [(5,), (4, 3)])
def test_served_mode_mixing_equals_the_broadcast_form(rows, modes):
    """The served step's mode mixing (a batched GEMM from three rows on) is the training form's arithmetic."""
    from models.koopman.kno import broadcast_mode_mix, real_mode_matrices, served_mode_mix

    torch.manual_seed(rows)
    wr, wi = torch.randn(6, 6, *modes), torch.randn(6, 6, *modes)
    z = torch.randn(rows, 6, *modes, 2)
    expected = broadcast_mode_mix(z, wr, wi)
    got = served_mode_mix(z, wr, wi, real_mode_matrices(wr, wi))
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_the_served_fno_is_exported_with_its_scored_forecast_card(tmp_path):
    """`build` writes every served operator, or only those named; the ν=1e-5 FNO's card carries its scored test report
    (the solver rows beside it) and its config the grid its 12 kept modes need."""
    from models.koopman import export

    export.build(tmp_path / "all")
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(export.MODELS)
    export.build(tmp_path / "one", names=("fno_ns2d_nu1e5",))
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["fno_ns2d_nu1e5"]
    card = (tmp_path / "one" / "fno_ns2d_nu1e5" / "card.md").read_text()
    assert card.startswith("# fno_ns2d_nu1e5\n\nFNO") and "split `test3`" in card
    assert "| this model on 32² windows (3 seeds) |" in card and "| solver 32², dt 0.025 |" in card
    spec = load_model(tmp_path / "one" / "fno_ns2d_nu1e5")
    assert spec.platform == "pytorch_libtorch" and spec.decoupled
    assert spec.min_shapes == {"WINDOW": (1, 10, 2 * 12, 2 * 12)}  # the 12 kept modes set the smallest grid
    export.build(tmp_path / "nu1e4", names=("fno_ns2d_nu1e4",))
    card = (tmp_path / "nu1e4" / "fno_ns2d_nu1e4" / "card.md").read_text()
    assert "split `test2`" in card and "trained to forecast 20" in card and "1000 trajectories" in card
    # its own rows (64² and 32² windows) and the solver's, not the other kinds scored in the same run
    assert card.count("| this model on") == 2 and "| solver 28², dt 0.03333 |" in card

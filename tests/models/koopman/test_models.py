"""KNO / FNO modules: printed form, parameter count of the published configuration, output shapes for
several window lengths and grid sizes, a tiny training run whose loss falls, and mesh independence."""
import pytest
import torch

from models.koopman import solvers
from models.koopman.fno import FNO
from models.koopman.kno import KNO, KoopmanOperator, OneStep, count_parameters, kno_loss, rollout
from models.koopman.train import relative_l2, rollout_error, train


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_published_ns_configuration_has_526026_parameters():
    model = KNO(t_in=10, width=32, modes=16, depth=8, dims=2)
    assert count_parameters(model) == 526_026
    assert repr(model) == "KNO(t_in=10, width=32, modes=16, depth=8, dims=2, step=1, encoder='linear')"
    assert repr(model.koopman) == "KoopmanOperator(channels=32, modes=16, dims=2)"


@pytest.mark.parametrize("dims,t_in,grid,step,encoder", [
    (1, 10, 64, 1, "linear"), (1, 3, 40, 2, "linear"), (1, 7, 128, 1, "cnn"),
    (2, 10, 16, 1, "linear"), (2, 4, 24, 3, "linear"), (2, 10, 20, 1, "cnn"), (2, 5, 12, 1, "linear"),
])
def test_kno_shapes(dims, t_in, grid, step, encoder):
    model = KNO(t_in=t_in, width=8, modes=4, depth=2, dims=dims, step=step, encoder=encoder)
    shape = (3, t_in) + (grid,) * dims
    window = torch.randn(shape)
    advanced, reconstruction = model(window)
    assert advanced.shape == shape and reconstruction.shape == shape
    frames, nxt = OneStep(model)(window)
    assert frames.shape == (3, step) + (grid,) * dims and nxt.shape == shape
    assert torch.equal(nxt[:, : t_in - step], window[:, step:]) and torch.equal(nxt[:, t_in - step :], frames)
    assert rollout(model, window, 7).shape == (3, 7) + (grid,) * dims


def test_non_square_grid_and_fno_shapes():
    window = torch.randn(2, 6, 16, 24)
    assert KNO(t_in=6, width=8, modes=4, depth=1)(window)[0].shape == window.shape
    assert FNO(t_in=6, width=8, modes=4, layers=2)(window).shape == (2, 1, 16, 24)
    assert FNO(t_in=6, width=8, modes=4, layers=2, dims=1, step=2)(torch.randn(2, 6, 33)).shape == (2, 2, 33)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="step"):
        KNO(t_in=4, step=5)
    with pytest.raises(ValueError, match="encoder"):
        KNO(encoder="vit")
    with pytest.raises(ValueError, match="dims"):
        KoopmanOperator(8, 4, dims=3)


def test_koopman_operator_keeps_only_low_modes():
    op = KoopmanOperator(2, 3, dims=2)
    grid = solvers.grid(16).float()
    high = torch.cos(2 * torch.pi * 6 * grid)[None, None, :, None].expand(1, 2, 16, 16)
    assert op(high).abs().max() < 1e-5  # |k| = 6 > modes: annihilated


@pytest.mark.parametrize("dims, shapes", [
    (2, [(1, 3, 8, 8), (3, 3, 9, 10), (4, 3, 24, 12)]),  # nx = 2m (no middle rows), odd sizes, nx > 2m; 1 and >2 rows
    (1, [(1, 3, 8), (5, 3, 9), (2, 3, 40)]),
])
def test_advance_with_serving_powers_equals_the_step_by_step_loop(dims, shapes):
    """The served KNO takes its `depth` Koopman steps at once in Fourier space (`KoopmanOperator.advance` with
    `serving_powers`); with weights large enough that the steps change the field a lot, it equals the loop, including
    the half-spectrum's first column that each inverse real FFT projects."""
    torch.manual_seed(dims)
    op = KoopmanOperator(3, 4, dims=dims)
    with torch.no_grad():
        op.weight_real.normal_(0, 0.3)
        op.weight_imag.normal_(0, 0.3)
        powers = op.serving_powers(5)
        for shape in shapes:
            z = torch.randn(shape)
            looped, fused = op.advance(z, 5), op.advance(z, 5, powers)
            assert (looped - z).abs().max() > 0.5  # the steps do move the field
            torch.testing.assert_close(fused, looped, atol=2e-5, rtol=1e-5)


def test_served_kno_trace_has_one_fft_pair():
    from models.koopman.kno import trace_one_step

    model = KNO(t_in=3, width=4, modes=4, depth=6, dims=2).eval()
    graph = str(trace_one_step(model, torch.randn(2, 3, 16, 16)).inlined_graph)
    assert graph.count("aten::fft_rfft2") == 1 and graph.count("aten::fft_irfft2") == 1
    assert model.served_matrices is None and model.koopman.served_matrices is None  # not left on the model


@pytest.fixture(scope="module")
def burgers_tiny():
    torch.set_num_threads(1)
    u0 = solvers.burgers_initial(24, 128, torch.Generator().manual_seed(0))
    frames = solvers.burgers_solve(u0, 0.1, 0.3, 1e-3, record_every=0.02)  # 15 frames
    return torch.cat([u0[:, None], frames], 1).float()  # [24, 16, 128]


def test_tiny_training_run_lowers_the_loss_and_is_mesh_independent(burgers_tiny, monkeypatch):
    from models.koopman import train as train_module

    monkeypatch.setitem(train_module.PROFILES, "burgers", train_module.PROFILES["burgers"] | {"t_in": 4, "t_out": 8})
    u64 = solvers.subsample(burgers_tiny, 64, 1)
    model = KNO(t_in=4, width=8, modes=8, depth=2, dims=1)
    before = rollout_error(model, u64[20:], 4, 8).mean().item()
    result = train("burgers", "kno", seed=0, iters=40, batch=16, unroll=1, eval_every=40, out=False,
                   model_overrides={"width": 8, "modes": 8, "depth": 2}, train_data=u64[:20], val_data=u64[20:])
    trained = result["module"]
    after = {n: rollout_error(trained, solvers.subsample(burgers_tiny, n, 1)[20:] if n < 128 else burgers_tiny[20:], 4, 8).mean().item()
             for n in (32, 64, 128)}
    assert after[64] < 0.5 * before
    # Trained at 64 points; scored at 32 and 128 with no change: the error stays of the same size.
    assert after[32] < 2 * after[64] + 0.02 and after[128] < 2 * after[64] + 0.02


def test_kno_loss_weights():
    model = KNO(t_in=3, width=4, modes=2, depth=1, dims=1)
    window, target = torch.randn(2, 3, 16), torch.randn(2, 1, 16)
    advanced, rec = model(window)
    expected = 5 * torch.nn.functional.mse_loss(advanced[:, :1], target) + 0.5 * torch.nn.functional.mse_loss(rec, window)
    assert torch.allclose(kno_loss(model, window, target), expected)
    assert relative_l2(target, target).abs().max() == 0

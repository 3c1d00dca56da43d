"""Ensemble rollouts (serve/ensembles.py) through the data plane, in this process: the members' statistics, their
reproducibility, and the refusals that bound them. The served path over gRPC and SSE is in test_server.py."""
import asyncio

import numpy as np
import pytest

from models.examples import heat1d
from models.examples.heat1d import reference_step
from serve.dataplane import DataPlane
from serve.errors import InvalidInput, RepositoryError
from serve.replica import ModelWorker
from serve.repository import ModelRepository, load_model
from serve.types import InferRequest


@pytest.fixture(scope="module")
def plane(repository):
    repo = ModelRepository(repository)
    backends = {(s.name, v): ModelWorker(str(repository), s.name, v) for s in repo for v in s.versions if s.name == "heat1d"}
    return DataPlane(repo, backends, auth_token=None)


def ensemble_request(u, steps, members=None, perturbation=None, seed=None, outputs=None):
    inputs = {"U": u, "STEPS": np.full((u.shape[0], 1), steps, np.int32)}
    for name, value, dtype in (("ENSEMBLE_MEMBERS", members, np.int32), ("ENSEMBLE_PERTURBATION", perturbation, np.float32),
                               ("ENSEMBLE_SEED", seed, np.int64)):
        if value is not None:
            inputs[name] = np.full((u.shape[0], 1), value, dtype)
    return InferRequest("heat1d", None, inputs, outputs)


def rollout(plane, request):
    async def collect():
        return [r.outputs async for r in plane.stream(request, protocol="grpc")]
    return asyncio.run(collect())


def test_members_statistics_match_the_members_run_one_by_one(plane):
    u = np.random.default_rng(0).random((1, 32), dtype=np.float32)
    steps = rollout(plane, ensemble_request(u, 4, members=20, perturbation=0.2, seed=7))
    assert len(steps) == 4 and all(sorted(s) == ["U_NEXT_MEAN", "U_NEXT_SPREAD"] for s in steps)
    assert steps[0]["U_NEXT_MEAN"].shape == (1, 32)
    # The same members, built as documented (member 0 unperturbed), rolled out by the reference solver.
    rng = np.random.default_rng(7)
    scale = 0.2 * float(u.std())
    members = np.concatenate([u] + [u + scale * rng.standard_normal((1, 32), dtype=np.float32) for _ in range(19)])
    for step in steps:
        members = reference_step(members)
        np.testing.assert_allclose(step["U_NEXT_MEAN"][0], members.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(step["U_NEXT_SPREAD"][0], members.std(axis=0, ddof=1), rtol=1e-3, atol=1e-5)
    # Diffusion damps the perturbations: the spread shrinks step after step.
    spreads = [float(s["U_NEXT_SPREAD"].mean()) for s in steps]
    assert all(a > b for a, b in zip(spreads, spreads[1:]))


def test_members_span_several_batches_and_the_seed_reproduces_them(plane):
    u = np.random.default_rng(1).random((1, 16), dtype=np.float32)
    first = rollout(plane, ensemble_request(u, 2, members=21, seed=3))  # 21 rows: three pieces of at most 8
    again = rollout(plane, ensemble_request(u, 2, members=21, seed=3))
    other = rollout(plane, ensemble_request(u, 2, members=21, seed=4))
    np.testing.assert_array_equal(first[-1]["U_NEXT_SPREAD"], again[-1]["U_NEXT_SPREAD"])
    assert not np.array_equal(first[-1]["U_NEXT_SPREAD"], other[-1]["U_NEXT_SPREAD"])
    assert float(first[-1]["U_NEXT_SPREAD"].max()) > 0


def test_zero_perturbation_gives_the_plain_forecast_with_no_spread(plane):
    u = np.random.default_rng(2).random((1, 16), dtype=np.float32)
    plain = rollout(plane, ensemble_request(u, 3))
    ensemble = rollout(plane, ensemble_request(u, 3, members=4, perturbation=0.0))
    np.testing.assert_allclose(ensemble[-1]["U_NEXT_MEAN"], plain[-1]["U_NEXT"], rtol=1e-6)
    assert not ensemble[-1]["U_NEXT_SPREAD"].any()


@pytest.mark.parametrize("request_args,fragment", [
    (dict(members=65), "1 (no ensemble) or 2..64"),
    (dict(members=0), "1 (no ensemble) or 2..64"),
    (dict(members=4, perturbation=float("nan")), "ENSEMBLE_PERTURBATION"),
    (dict(members=4, perturbation=-1.0), "outside 0..10"),
    (dict(perturbation=0.1), "send ENSEMBLE_MEMBERS of at least 2"),
    (dict(members=4, outputs=["U_NEXT"]), "gets its members' statistics"),
    (dict(outputs=["U_NEXT_MEAN"]), "is an ensemble statistic"),
])
def test_bad_ensemble_requests_name_the_input(plane, request_args, fragment):
    u = np.ones((1, 8), np.float32)
    with pytest.raises(InvalidInput, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        plane.stream(ensemble_request(u, 2, **request_args), protocol="grpc")


def test_an_ensemble_holds_one_forecast_and_its_state_is_bounded(plane):
    with pytest.raises(InvalidInput, match="one forecast"):
        plane.stream(ensemble_request(np.ones((2, 8), np.float32), 2, members=4), protocol="grpc")
    wide = np.ones((1, 2 << 20), np.float32)  # 8 MiB of state: 64 members would hold 512 MiB, past the 64 MiB default
    with pytest.raises(InvalidInput, match="rollout_ensemble_max_bytes"):
        plane.stream(ensemble_request(wide, 2, members=64), protocol="grpc")


@pytest.mark.parametrize("edit,fragment", [
    (lambda c: c.replace('name: "ENSEMBLE_SEED" data_type: TYPE_INT64 dims: [ 1 ] optional: true',
                         'name: "ENSEMBLE_SEED" data_type: TYPE_INT64 dims: [ 1 ]'), "optional input ENSEMBLE_SEED"),
    (lambda c: c.replace('{ name: "U_NEXT_SPREAD" data_type: TYPE_FP32 dims: [ -1 ] }', '{ name: "OTHER" data_type: TYPE_FP32 dims: [ -1 ] }'),
     "needs the output U_NEXT_SPREAD"),
    (lambda c: c.replace('string_value: "U_NEXT" }} }}'.replace("}}", "}"), 'string_value: "NOPE" } }'), "ensemble output 'NOPE'"),
])
def test_ensemble_configs_are_checked_at_load(tmp_path, edit, fragment):
    folder = tmp_path / "heat1d"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(heat1d.build().SerializeToString())
    config = edit(heat1d.CONFIG)
    assert config != heat1d.CONFIG
    (folder / "config.pbtxt").write_text(config)
    with pytest.raises(RepositoryError, match="config.pbtxt") as caught:
        load_model(folder)
    assert fragment in str(caught.value)


def test_unary_infer_returns_every_steps_statistics(plane):
    u = np.random.default_rng(5).random((1, 16), dtype=np.float32)
    response = asyncio.run(plane.infer(ensemble_request(u, 3, members=5, perturbation=0.1), protocol="http"))
    assert sorted(response.outputs) == ["U_NEXT_MEAN", "U_NEXT_SPREAD"]
    assert response.outputs["U_NEXT_MEAN"].shape == (1, 3, 16) and response.parameters["rollout_steps"] == 3
    streamed = rollout(plane, ensemble_request(u, 3, members=5, perturbation=0.1))
    np.testing.assert_array_equal(response.outputs["U_NEXT_SPREAD"][:, 2], streamed[2]["U_NEXT_SPREAD"])

"""`make bench`'s in-process column runs each model's runtime as the server does, so it keeps up with the handlers."""
import numpy as np
import pytest


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    from export.build import main as build

    root = tmp_path_factory.mktemp("bench") / "model_repository"
    build(["--repository", str(root), "--only", "iqa"])
    return root


def test_the_iqa_cell_runs_the_served_handler_with_every_input_its_preprocess_makes(repository, monkeypatch):
    from loadtest import bench
    from models.iqa.serving import IqaHandler

    seen = []
    real = IqaHandler.infer
    monkeypatch.setattr(IqaHandler, "infer", lambda self, inputs: seen.append(sorted(inputs)) or real(self, inputs))
    cell = bench.in_process(repository, "iqa", 3, 0.05)
    assert cell["errors"] == 0 and cell["requests"] >= 1 and np.isfinite(cell["throughput"])
    assert seen and seen[0] == ["CROPS", "JPEG_QUALITY", "NSS"]  # the level and the cap are part of what is timed

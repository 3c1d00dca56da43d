"""Admission: refused versions are listed UNAVAILABLE with the reason, never served; verdicts are cached."""
import asyncio

import numpy as np
import pytest

from models.examples.export import build as build_examples
from serve.admission import admit
from serve.dataplane import DataPlane
from serve.errors import ModelNotReady, RepositoryError
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from serve.types import InferRequest

CHECK = "models.examples.admission:refuse_listed"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("admission")
    build_examples(folder)
    return folder


def test_refused_version_is_unavailable_with_its_reason(root, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMSERVE_EXAMPLE_REFUSE", "simple")
    repo = ModelRepository(root)
    refused = admit(repo, CHECK, tmp_path)
    assert refused == {("simple", 1): "listed in STREAMSERVE_EXAMPLE_REFUSE"}
    backends = {(s.name, v): ModelWorker(str(root), s.name, v) for s in repo for v in s.versions if (s.name, v) not in refused}
    plane = DataPlane(repo, backends, refused=refused)
    entry = next(e for e in plane.index() if e["name"] == "simple")
    assert entry == {"name": "simple", "version": "1", "state": "UNAVAILABLE", "reason": "listed in STREAMSERVE_EXAMPLE_REFUSE"}
    assert not asyncio.run(plane.model_ready("simple"))
    assert asyncio.run(plane.ready())  # the server is ready: the refused model is not one it serves
    request = InferRequest("simple", None, {n: np.ones((1, 16), np.int32) for n in ("INPUT0", "INPUT1")})
    with pytest.raises(ModelNotReady, match="refused at admission: listed"):
        asyncio.run(plane.infer(request, "test"))


def test_verdicts_are_cached_by_file_content(root, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMSERVE_EXAMPLE_REFUSE", "heat1d")
    assert set(admit(ModelRepository(root), CHECK, tmp_path)) == {("heat1d", 1)}
    monkeypatch.setenv("STREAMSERVE_EXAMPLE_REFUSE", "")
    assert set(admit(ModelRepository(root), CHECK, tmp_path)) == {("heat1d", 1)}  # same files: cached verdict
    assert admit(ModelRepository(root), CHECK, tmp_path / "fresh") == {}


def test_check_outside_models_is_refused(root, tmp_path):
    with pytest.raises(RepositoryError, match="models.<family>"):
        admit(ModelRepository(root), "os:remove", tmp_path)

"""The Serve config generated from the repository is valid for Ray Serve and carries config.pbtxt's rules."""
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve.serve_config import DEDICATED, INGRESS, build_serve_config, deployment_of, hosted, placement, write_serve_config
from serve.errors import RepositoryError
from serve.repository import ModelRepository, load_model
from serve.settings import ServerSettings


def test_generated_config_is_a_valid_serve_deploy_schema(repository, tmp_path):
    settings = ServerSettings(repository=str(repository))
    path = tmp_path / "serve_config.yaml"
    write_serve_config(path, settings, repository_path="/models")
    config = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "serve.app:build_app" and app.args["repository"] == "/models"
    assert "digits_cnn/2" in app.args["models"] and "video_artifacts/1" in app.args["models"]
    names = {d.name for d in app.deployments}
    # CPU runtimes and light handlers run in the ingress; heavy handlers and jobs share a pool per kind; a model whose
    # config asks to run outside the ingress joins the pool it names.
    assert names == {"Ingress", "pool_video", "pool_jobs"}
    groups = {name: sorted(f"{s.name}/{v}" for s, v in versions) for name, versions in hosted(ModelRepository(repository)).items()}
    assert groups["pool_video"] == ["video_artifacts/1", "video_artifacts_segments/1"]
    assert groups["pool_jobs"] == [
        "account_clusters_job/1", "backdoor_scan/1", "countdown_job/1", "repeat_int32/1", "slow_identity_dedicated/1",
    ]
    assert {"simple/1", "digits_cnn/1", "digits_cnn/2", "iqa/1", "bot_detector/1", "slow_identity/1"} <= set(groups[None])
    assert config["http_options"]["host"] == "127.0.0.1"
    assert config["grpc_options"]["grpc_servicer_functions"] == ["streamserve_proto.add_servicer_to_server"]


def _with_params(repository, tmp_path, model: str, extra: str):
    folder = tmp_path / model
    folder.mkdir()
    (folder / "1").symlink_to(repository / model / "1")
    (folder / "config.pbtxt").write_text((repository / model / "config.pbtxt").read_text() + extra)
    return load_model(folder)


def test_placement_follows_platform_handler_and_config(repository, tmp_path):
    repo = ModelRepository(repository)
    assert placement(repo.get("digits_cnn"))[0] == INGRESS
    assert placement(repo.get("iqa")) == (INGRESS, "its handler declares placement 'ingress'")
    assert placement(repo.get("video_artifacts"))[0] == DEDICATED
    assert placement(repo.get("slow_identity_dedicated")) == (DEDICATED, "config.pbtxt parameter 'placement'")
    gpu = _with_params(repository, tmp_path, "digits_cnn", 'instance_group [ { kind: KIND_GPU count: 1 } ]\n')
    assert placement(gpu) == (DEDICATED, "KIND_GPU: its replicas hold a GPU") and deployment_of(gpu, 1) == "digits_cnn_v1"
    pooled = _with_params(repository, tmp_path, "accumulate_sequence", 'parameters { key: "placement" value { string_value: "dedicated" } }\n'
                          'parameters { key: "pool" value { string_value: "examples" } }\n')
    assert deployment_of(pooled, 1) == "pool_examples"
    with pytest.raises(RepositoryError, match="parameter 'placement': Input should be 'ingress' or 'dedicated', got 'ingres'"):
        _with_params(repository, tmp_path, "simple", 'parameters { key: "placement" value { string_value: "ingres" } }\n')


def test_deployment_options_follow_config_pbtxt(repository):
    config = build_serve_config(ServerSettings(repository=str(repository), model_num_cpus=0.3))
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    jobs = deployments["pool_jobs"]  # account_clusters_job, backdoor_scan, countdown_job, repeat_int32, slow_identity_dedicated
    # each model of the pool can hold two of its batches at once (8 for unbatched models, 2 x 4 for slow_identity)
    assert jobs["max_ongoing_requests"] == 8 + 8 + 8 + 8 + 8
    assert jobs["max_queued_requests"] == 4 * jobs["max_ongoing_requests"]  # not every model sets max_queue_size
    assert jobs["ray_actor_options"] == {"num_cpus": 0.3, "num_gpus": 0.0}
    assert jobs["autoscaling_config"]["max_replicas"] == 1
    assert deployments["Ingress"]["user_config"] == {"snapshots": {
        "bot_detector/1": "graph.npz", "account_clusters/1": "clusters.npz", "account_cluster_members/1": "clusters.npz",
    }}


def test_launcher_refuses_a_repository_that_cannot_be_placed(repository):
    from serve.launcher import _check_capacity

    config = build_serve_config(ServerSettings(repository=str(repository)))
    _check_capacity(config, {"CPU": 2.0})  # the default shares fit a 2-core machine
    with pytest.raises(SystemExit, match="lower STREAMSERVE_MODEL_NUM_CPUS"):
        _check_capacity(build_serve_config(ServerSettings(repository=str(repository), model_num_cpus=1.0)), {"CPU": 2.0})

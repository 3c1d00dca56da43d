"""The Serve config generated from the repository is valid for Ray Serve and carries config.pbtxt's rules."""
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve.config import build_serve_config, write_serve_config
from serve.repository import ModelRepository
from serve.settings import ServerSettings


def test_generated_config_is_a_valid_serve_deploy_schema(repository, tmp_path):
    settings = ServerSettings(repository=str(repository))
    path = tmp_path / "serve_config.yaml"
    write_serve_config(path, settings, repository_path="/models")
    config = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "serve.app:build_app" and app.args == {"repository": "/models"}
    names = {d.name for d in app.deployments}
    versions = [f"{spec.name}_v{v}" for spec in ModelRepository(repository) for v in spec.versions]
    assert names == {"Ingress", *versions} and len(names) == 1 + len(versions)
    assert {"simple_v1", "heat1d_v1", "digits_cnn_v1", "digits_cnn_v2", "digits_cnn_torchscript_v1"} <= names
    assert config["http_options"]["host"] == "127.0.0.1"
    assert config["grpc_options"]["grpc_servicer_functions"] == ["proto.add_servicer_to_server"]


def test_deployment_options_follow_config_pbtxt(repository):
    config = build_serve_config(ServerSettings(repository=str(repository), model_num_cpus=0.3))
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    digits = deployments["digits_cnn_v2"]
    assert digits["max_ongoing_requests"] >= 32  # max_batch_size 32: a batch can fill
    assert digits["autoscaling_config"]["max_replicas"] == 2  # instance_group count 2
    assert digits["ray_actor_options"] == {"num_cpus": 0.3, "num_gpus": 0.0}
    assert deployments["simple_v1"]["autoscaling_config"]["max_replicas"] == 1


def test_launcher_refuses_a_repository_that_cannot_be_placed(repository):
    from serve.launcher import _check_capacity

    config = build_serve_config(ServerSettings(repository=str(repository)))
    _check_capacity(config, {"CPU": 2.0})  # the default shares fit a 2-core machine
    with pytest.raises(SystemExit, match="lower STREAMSERVE_MODEL_NUM_CPUS"):
        _check_capacity(build_serve_config(ServerSettings(repository=str(repository), model_num_cpus=0.5)), {"CPU": 2.0})

"""Typed per-model parameters: a handler's `Params` is checked when the repository loads, the export writes
config.pbtxt from the same class, and any other model may carry only the keys the server reads."""
import pytest
from pydantic import Field

from models.backdoor.serving import ScanParams
from models.examples import handlers, simple
from models.graph.serving import BotDetectorHandler, ClusterJobHandler
from models.iqa.serving import IqaParams
from models.video.serving import VideoParams
from serve.errors import RepositoryError
from serve.params import HandlerParams, parse
from serve.repository import load_model, parse_config


def handler_model(root, config: str, name="slow_identity"):
    folder = root / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    return folder


def test_a_misspelt_handler_parameter_is_a_load_error_naming_it(tmp_path):
    config = handlers.SLOW_IDENTITY.replace('key: "delay_s"', 'key: "delay_sec"')
    with pytest.raises(RepositoryError, match=r"slow_identity.*unknown parameter 'delay_sec' \(this model's parameters: \['delay_s'\]\)"):
        load_model(handler_model(tmp_path, config))


@pytest.mark.parametrize("value,expected", [("-1", "greater than or equal to 0"), ("soon", "valid number"), ("11", "less than or equal to 10")])
def test_a_bad_value_names_the_key_and_the_bound(tmp_path, value, expected):
    config = handlers.SLOW_IDENTITY.replace('string_value: "0.05"', f'string_value: "{value}"')
    with pytest.raises(RepositoryError, match=rf"parameter 'delay_s': .*{expected}.*, got '{value}'"):
        load_model(handler_model(tmp_path, config))


def test_the_handler_gets_its_parameters_parsed(tmp_path):
    config = handlers.SLOW_IDENTITY.replace('string_value: "0.05"', 'string_value: "0.25"')
    spec = load_model(handler_model(tmp_path, config))
    handler = handlers.SlowIdentityHandler(spec.path / "1", spec.params, ["X"], ["Y"], 1, "cpu")
    assert handler.params.delay_s == 0.25 and isinstance(handler.params, handlers.DelayParams)


def test_a_model_without_a_handler_takes_only_the_servers_keys(tmp_path):
    from tests.serve.test_repository import make_model

    make_model(tmp_path / "a", simple.CONFIG + 'parameters { key: "reject_non_finte" value { string_value: "true" } }\n')
    with pytest.raises(RepositoryError, match=r"unknown parameter\(s\) \['reject_non_finte'\]"):
        load_model(tmp_path / "a" / "simple")
    make_model(tmp_path / "b", simple.CONFIG + 'parameters { key: "info.units" value { string_value: "m/s" } }\n'
               'parameters { key: "reject_non_finite" value { string_value: "true" } }\n')
    assert load_model(tmp_path / "b" / "simple").reject_non_finite


@pytest.mark.parametrize("params_class", [IqaParams, VideoParams, ScanParams, BotDetectorHandler.Params, ClusterJobHandler.Params, handlers.DelayParams])
def test_the_config_the_export_writes_parses_back_to_the_defaults(params_class):
    config = parse_config('name: "m"\n' + params_class().pbtxt())
    written = {key: value.string_value for key, value in config.parameters.items()}
    unset = {name for name, field in params_class.model_fields.items() if field.default is None}  # the handler decides
    assert set(written) == set(params_class.model_fields) - unset
    assert parse(params_class, written, "m/config.pbtxt") == params_class()


def test_server_keys_pass_through_to_the_server_not_the_handler():
    class Own(HandlerParams):
        width: int = Field(3, ge=1)

    got = parse(Own, {"handler": "models.x:Y", "snapshot": "g.npz", "output_histogram.Y": "0,1", "width": "5"}, "m")
    assert got.width == 5


@pytest.mark.parametrize("key,value,expected", [
    ("rollout_max_steps", "many", "rollout_max_steps': Input should be a valid integer"),
    ("rollout_max_steps", "0", "rollout_max_steps': Input should be greater than or equal to 1"),
    ("num_gpus", "-1", "num_gpus': Input should be greater than 0"),
    ("reject_non_finite", "yes please", "reject_non_finite': Input should be a valid boolean"),
    ("pool", "../jobs", "pool': String should match pattern"),
    ("min_shape.INPUT0", "1,a", "min_shape.INPUT0': expected min_shape.<TENSOR> = comma-separated non-negative integers, got '1,a'"),
    ("max_bytes.INPUT0", "-5", "max_bytes.INPUT0': expected max_bytes.<TENSOR> = a positive integer"),
    ("output_histogram.OUTPUT0", "low,high", "output_histogram.OUTPUT0': expected output_histogram.<TENSOR> = comma-separated bucket boundaries"),
])
def test_the_servers_own_keys_are_typed_too(tmp_path, key, value, expected):
    from tests.serve.test_repository import make_model

    make_model(tmp_path, simple.CONFIG + f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}\n')
    with pytest.raises(RepositoryError, match=r"simple/config.pbtxt: parameter '" + expected.replace("(", r"\(").replace(")", r"\)")):
        load_model(tmp_path / "simple")

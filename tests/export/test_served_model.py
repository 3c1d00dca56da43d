"""One description of a served model writes both its config.pbtxt and its card's signature."""
import pytest

from export.served_model import ServedModel, Tensor
from models.backdoor.export import MODEL as BACKDOOR
from models.iqa.export import MODEL as IQA
from models.video.export import MODEL as VIDEO, SEQ_MODEL
from serve.repository import ModelKind, parse_config

DESCRIBED = [IQA, BACKDOOR, VIDEO, SEQ_MODEL]


@pytest.mark.parametrize("model", DESCRIBED, ids=lambda m: m.name)
def test_config_and_signature_list_the_same_tensors(model):
    config = parse_config(model.config_pbtxt())
    signature = model.signature()
    for tensor in [*config.input, *config.output]:
        assert f"| `{tensor.name}` |" in signature
    assert [t.name for t in config.input] == [t.name for t in model.inputs]
    assert [t.name for t in config.output] == [t.name for t in model.outputs]


def test_a_description_round_trips_through_the_repository_loader(tmp_path):
    from export.repository import write_model

    model = ServedModel(
        "tiny", max_batch_size=4, queue_delay_us=100, extra="version_policy { all { } }",
        inputs=(Tensor("X", "BYTES", (1,), "text"), Tensor("Y", "FP32", (-1, 3), "rows", optional=True)),
        outputs=(Tensor("Z", "INT64", (2,), "two numbers"),), server_params={"info.units": "m"},
    )
    folder = write_model(tmp_path, "tiny", model.config_pbtxt(), {1: ("model.onnx", b"")}, "# tiny\n" + model.signature())
    from serve.repository import load_model

    spec = load_model(folder)
    assert spec.max_batch_size == 4 and spec.max_queue_delay_s == 0.0001 and spec.kind is ModelKind.UNARY
    assert [(t.name, t.datatype, t.dims, t.optional) for t in spec.inputs] == [("X", "BYTES", (1,), False), ("Y", "FP32", (-1, 3), True)]
    assert spec.params == {"info.units": "m"} and spec.config.version_policy.HasField("all")
    assert "| input (optional) | `Y` | FP32 | [batch ≤ 4] + [any, 3] | rows |" in (folder / "card.md").read_text()


def test_handler_parameters_are_written_from_the_params_class():
    config = parse_config(IQA.config_pbtxt())
    assert config.backend == "python" and config.parameters["handler"].string_value == "models.iqa.serving:IqaHandler"
    assert {k: v.string_value for k, v in config.parameters.items() if k in IQA.params.model_fields} == IQA.params.as_strings()
    assert SEQ_MODEL.config().HasField("sequence_batching") and VIDEO.config().model_transaction_policy.decoupled

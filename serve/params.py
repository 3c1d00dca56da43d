"""Typed per-model parameters: config.pbtxt's `parameters` map, checked against a declared model at load.

Triton's schema keeps options beyond its own as `parameters { key: ... value { string_value: ... } }`. The server
reads a fixed set of them (`SERVER_KEYS`, `SERVER_PREFIXES`); every other key belongs to the model's handler,
which declares them as a `HandlerParams` subclass with types, defaults and bounds. The family's export writes
config.pbtxt from the same class (`pbtxt()`), so each default lives in one place, and a misspelt or out-of-range
key is a repository error naming it when the server (or the export) loads the model.
"""
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RepositoryError

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NUMBERS = r"^-?[0-9.eE+-]+(,-?[0-9.eE+-]+)*$"


class ServerParams(BaseModel):
    """The keys the server itself reads (serve/repository.py, serve/serve_config.py), typed and bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # the other keys are the handler's, or prefixed ones below

    handler: str | None = Field(None, description="models.<family>.<module>:<Class> of a python-backend model")
    snapshot: str | None = Field(None, description="the data file a handler answers from, in each version folder")
    placement: Literal["ingress", "dedicated"] | None = None
    pool: str | None = Field(None, pattern=_NAME, description="the pool deployment (pool_<name>) a dedicated model shares")
    num_gpus: float = Field(1.0, gt=0, le=8, description="the GPU share of each replica of a KIND_GPU model")
    reject_non_finite: bool = False
    rollout_state: str | None = Field(None, pattern=r"^\w+=\w+(,\w+=\w+)*$", description="INPUT=OUTPUT pairs fed back each step")
    rollout_steps_input: str | None = Field(None, pattern=_NAME)
    rollout_max_steps: int = Field(1000, ge=1, le=1_000_000)
    rollout_ensemble_outputs: str | None = Field(
        None, pattern=r"^\w+(,\w+)*$",
        description="outputs whose ensemble mean and spread (<OUTPUT>_MEAN, <OUTPUT>_SPREAD) an ensemble request gets")
    rollout_ensemble_max_members: int = Field(64, ge=2, le=4096, description="most members one ensemble request may ask for")
    rollout_ensemble_max_bytes: int = Field(
        64 << 20, ge=1 << 20, le=16 << 30, description="most bytes an ensemble's rollout state may hold (members x state)")


# `<prefix><TENSOR>` keys the server reads, with what their value must look like.
# `info.<name>`: descriptive metadata for clients (a rollout's time step), shown in the config and never read here.
SERVER_PREFIXES = {
    "output_histogram.": (_NUMBERS, "comma-separated bucket boundaries"),
    "output_labels.": (r"^[^,]*(,[^,]*)*$", "comma-separated labels"),
    "min_shape.": (r"^[0-9]+(,[0-9]+)*$", "comma-separated non-negative integers"),
    "max_bytes.": (r"^[1-9][0-9]*$", "a positive integer"),
    "max_words.": (r"^[1-9][0-9]*$", "a positive integer"),
    "info.": (r"", "any text"),
}
SERVER_KEYS = frozenset(ServerParams.model_fields)


def is_server_key(key: str) -> bool:
    return key in SERVER_KEYS or key.startswith(tuple(SERVER_PREFIXES))


def parse_server(params: dict[str, str], where: str) -> ServerParams:
    """The server's own keys of `params`, validated; a RepositoryError names each bad key and what it expects."""
    for key, value in params.items():
        prefix = next((p for p in SERVER_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            pattern, expected = SERVER_PREFIXES[prefix]
            if key == prefix or not re.match(pattern, value):
                raise RepositoryError(f"{where}: parameter {key!r}: expected {prefix}<TENSOR> = {expected}, got {value!r}")
    return _validated(ServerParams, {k: v for k, v in params.items() if k in SERVER_KEYS}, where)


class HandlerParams(BaseModel):
    """Base of a handler's parameters: unknown keys are refused, values are parsed from config.pbtxt's strings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def as_strings(self) -> dict[str, str]:
        """Every field as config.pbtxt holds it (defaults included, so the file says what the model runs with); a field
        whose default is None (the handler decides from the model's files) is left out."""
        return {key: str(value).lower() if isinstance(value, bool) else str(value)
                for key, value in self.model_dump().items() if value is not None}

    def pbtxt(self) -> str:
        """These values as config.pbtxt `parameters` entries."""
        return "\n".join(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}' for key, value in self.as_strings().items())


def parse(params_class: type[HandlerParams], params: dict[str, str], where: str) -> HandlerParams:
    """The handler's own keys of `params`, validated; a RepositoryError names each bad key and what it expects."""
    return _validated(params_class, {key: value for key, value in params.items() if not is_server_key(key)}, where)


def _validated(model: type[BaseModel], values: dict[str, str], where: str):
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            key = ".".join(str(part) for part in error["loc"]) or "?"
            if error["type"] == "extra_forbidden":
                known = sorted(model.model_fields) or "none"
                problems.append(f"unknown parameter {key!r} (this model's parameters: {known})")
            else:
                problems.append(f"parameter {key!r}: {error['msg']}, got {error.get('input')!r}")
        raise RepositoryError(f"{where}: " + "; ".join(problems)) from None

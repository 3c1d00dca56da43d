"""Typed per-model parameters: config.pbtxt's `parameters` map, checked against a declared model at load.

Triton's schema keeps options beyond its own as `parameters { key: ... value { string_value: ... } }`. The server
reads a fixed set of them (`SERVER_KEYS`, `SERVER_PREFIXES`); every other key belongs to the model's handler,
which declares them as a `HandlerParams` subclass with types, defaults and bounds. The family's export writes
config.pbtxt from the same class (`pbtxt()`), so each default lives in one place, and a misspelt or out-of-range
key is a repository error naming it when the server (or the export) loads the model.
"""
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import RepositoryError

# What the server itself reads (serve/repository.py, serve/serve_config.py).
SERVER_KEYS = frozenset({
    "handler", "snapshot", "placement", "pool", "num_gpus", "reject_non_finite",
    "rollout_state", "rollout_steps_input", "rollout_max_steps",
})
# `info.<name>`: descriptive metadata for clients (a rollout's time step), shown in the config and never read here.
SERVER_PREFIXES = ("output_histogram.", "output_labels.", "min_shape.", "max_bytes.", "max_words.", "info.")


def is_server_key(key: str) -> bool:
    return key in SERVER_KEYS or key.startswith(SERVER_PREFIXES)


class HandlerParams(BaseModel):
    """Base of a handler's parameters: unknown keys are refused, values are parsed from config.pbtxt's strings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def as_strings(self) -> dict[str, str]:
        """Every field as config.pbtxt holds it (defaults included, so the file says what the model runs with)."""
        return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in self.model_dump().items()}

    def pbtxt(self) -> str:
        """These values as config.pbtxt `parameters` entries."""
        return "\n".join(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}' for key, value in self.as_strings().items())


def parse(params_class: type[HandlerParams], params: dict[str, str], where: str) -> HandlerParams:
    """The handler's own keys of `params`, validated; a RepositoryError names each bad key and what it expects."""
    own = {key: value for key, value in params.items() if not is_server_key(key)}
    try:
        return params_class.model_validate(own)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            key = ".".join(str(part) for part in error["loc"]) or "?"
            if error["type"] == "extra_forbidden":
                known = sorted(params_class.model_fields) or "none"
                problems.append(f"unknown parameter {key!r} (this model's parameters: {known})")
            else:
                problems.append(f"parameter {key!r}: {error['msg']}, got {error.get('input')!r}")
        raise RepositoryError(f"{where}: " + "; ".join(problems)) from None

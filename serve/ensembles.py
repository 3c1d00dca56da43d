"""Ensemble rollouts: one request asks for N perturbed members of its forecast, and each step's response carries
the members' mean and spread instead of N forecasts.

A rollout model offers this with `rollout_ensemble_outputs` (serve/params.py) and the optional control inputs of
`serve.repository.ENSEMBLE_INPUTS`. Member 0 is the unperturbed forecast (the control member, as in weather
ensembles); every other member starts from the request's state plus Gaussian noise whose standard deviation is
`ENSEMBLE_PERTURBATION` (default 0.01) times the standard deviation of that state input. `ENSEMBLE_SEED` (default 0)
makes the members reproducible. The members are rows of the model's batch, so the step-level batching that serves
concurrent rollouts serves the members too.
"""
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInput
from .repository import ENSEMBLE_INPUTS, ENSEMBLE_MEMBERS, ENSEMBLE_PERTURBATION, ENSEMBLE_SEED, Ensemble, Rollout

DEFAULT_PERTURBATION = 0.01
MAX_PERTURBATION = 10.0


@dataclass(frozen=True)
class EnsembleRequest:
    members: int
    perturbation: float
    seed: int


def ensemble_request(rollout: Rollout, inputs: dict[str, np.ndarray]) -> EnsembleRequest | None:
    """The ensemble a request asks for, checked (members, perturbation, state size, one forecast per request); None
    for a plain rollout. Raises InvalidInput naming the input at fault."""
    if rollout.ensemble is None:
        return None
    members = _one_value(inputs, ENSEMBLE_MEMBERS, 1)
    if members == 1:
        extra = [name for name in (ENSEMBLE_PERTURBATION, ENSEMBLE_SEED) if name in inputs]
        if extra:
            raise InvalidInput(f"input {extra[0]!r} applies to an ensemble: send {ENSEMBLE_MEMBERS} of at least 2 with it")
        return None
    if not 2 <= members <= rollout.ensemble.max_members:
        raise InvalidInput(f"input {ENSEMBLE_MEMBERS!r}: {members} members asked for; 1 (no ensemble) or 2.."
                           f"{rollout.ensemble.max_members} expected")
    perturbation = float(_one_value(inputs, ENSEMBLE_PERTURBATION, DEFAULT_PERTURBATION))
    if not 0.0 <= perturbation <= MAX_PERTURBATION:  # NaN fails this too
        raise InvalidInput(f"input {ENSEMBLE_PERTURBATION!r}: {perturbation} is outside 0..{MAX_PERTURBATION} "
                           "(a standard deviation relative to the state's)")
    state = [inputs[name] for name in rollout.state.values()]
    if any(array.shape[0] != 1 for array in state):
        raise InvalidInput(f"input {ENSEMBLE_MEMBERS!r}: an ensemble request holds one forecast (batch size 1), "
                           f"got {state[0].shape[0]} rows; send one request per forecast")
    state_bytes = members * sum(array.nbytes for array in state)
    if state_bytes > rollout.ensemble.max_bytes:
        raise InvalidInput(f"input {ENSEMBLE_MEMBERS!r}: {members} members of this state hold {state_bytes} bytes, over the "
                           f"model's limit of {rollout.ensemble.max_bytes} (rollout_ensemble_max_bytes); ask for fewer members")
    return EnsembleRequest(members, perturbation, _one_value(inputs, ENSEMBLE_SEED, 0))


def check_outputs(rollout: Rollout, requested: list[str] | None, ensemble: EnsembleRequest | None) -> None:
    """An ensemble response carries the statistics only (the members are rows the request did not send); a plain
    one carries none of them."""
    derived = rollout.derived_outputs
    for name in requested or ():
        if ensemble and name not in derived:
            raise InvalidInput(f"output {name!r}: an ensemble request gets its members' statistics, {sorted(derived)}")
        if not ensemble and name in derived:
            raise InvalidInput(f"output {name!r} is an ensemble statistic: send {ENSEMBLE_MEMBERS} of at least 2")


def perturbed_members(rollout: Rollout, state: dict[str, np.ndarray], ensemble: EnsembleRequest) -> dict[str, np.ndarray]:
    """The state with its rollout inputs repeated into `members` rows, member 0 unperturbed; control inputs removed."""
    rng = np.random.default_rng(ensemble.seed)
    members = {name: value for name, value in state.items() if name not in ENSEMBLE_INPUTS}
    for name in rollout.state.values():
        base = members[name]
        scale = ensemble.perturbation * float(base.std())
        rows = np.empty((ensemble.members, *base.shape[1:]), base.dtype)  # filled a row at a time: no member-sized temporary
        rows[0] = base[0]
        for row in rows[1:]:
            row[...] = base[0] + scale * rng.standard_normal(row.shape, dtype=np.float32)
        members[name] = rows
    for name, value in list(members.items()):
        if name not in rollout.state.values():  # other per-row inputs follow the members
            members[name] = np.repeat(value, ensemble.members, axis=0)
    return members


def ensemble_statistics(ensemble: Ensemble, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One step's mean and spread (sample standard deviation) over the member rows, each with one row. Summed a member
    at a time in float64, so no temporary as large as the members is made."""
    statistics = {}
    for name, (mean, spread) in ensemble.statistics.items():
        values = outputs[name]
        total, squares = np.zeros(values.shape[1:], np.float64), np.zeros(values.shape[1:], np.float64)
        for row in values:
            total += row
            squares += np.square(row, dtype=np.float64)
        count = values.shape[0]
        average = total / count
        variance = np.maximum(squares - count * np.square(average), 0.0) / (count - 1)
        statistics[mean] = average[None].astype(values.dtype)
        statistics[spread] = np.sqrt(variance)[None].astype(values.dtype)
    return statistics


def _one_value(inputs: dict[str, np.ndarray], name: str, default):
    if name not in inputs:
        return default
    values = np.unique(inputs[name])
    if values.size != 1:
        raise InvalidInput(f"input {name!r}: one value expected (every row the same), got {values.tolist()[:8]}")
    return values[0].item()

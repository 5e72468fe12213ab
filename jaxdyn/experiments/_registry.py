"""The experiment registry: an experiment is one function `run(cfg, run_dir, resume)`, its
config schema, and an optional `check(cfg)` of what the schema cannot say (combinations of
keys), run before any work starts."""

import dataclasses
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from ..config import ConfigError, closest

__all__ = ["Experiment", "get", "names", "register"]

RunFn = Callable[[DictConfig, Path, bool], dict]
CheckFn = Callable[[DictConfig], None]


def _no_check(cfg: DictConfig) -> None:
    """Nothing beyond the schema."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, config schema (a dataclass) and run function.

    `run(cfg, run_dir, resume)` trains and evaluates, writes its figures into `run_dir`, and
    returns the summary metrics (a JSON-serialisable dict). `check(cfg)` raises `ConfigError`
    for a combination of config values the run would refuse, before anything starts.
    """

    name: str
    schema: type
    run: RunFn
    description: str
    check: CheckFn = _no_check


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, schema: type, *, check: CheckFn = _no_check) -> Callable[[RunFn], RunFn]:
    """Decorator registering `run` as experiment `name` with config `schema` and the
    up-front `check` of its config (see `Experiment`)."""

    def decorate(run: RunFn) -> RunFn:
        if name in _REGISTRY:
            raise ValueError(f"experiment {name!r} is registered twice")
        description = (run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else ""
        _REGISTRY[name] = Experiment(name, schema, run, description, check)
        return run

    return decorate


def get(name: str) -> Experiment:
    """The experiment called `name`; `ConfigError` with the closest name if unknown."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown experiment '{name}'{closest(name, list(_REGISTRY))}; "
            f"known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def names() -> list[str]:
    """Names of all registered experiments, sorted."""
    return sorted(_REGISTRY)

"""The experiment registry: an experiment is one function `run(cfg, run_dir, resume)`."""

import dataclasses
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from ..config import ConfigError, _closest

__all__ = ["Experiment", "get", "names", "register"]

RunFn = Callable[[DictConfig, Path, bool], dict]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, config schema (a dataclass) and run function.

    `run(cfg, run_dir, resume)` trains and evaluates, writes its figures into `run_dir`, and
    returns the summary metrics (a JSON-serialisable dict).
    """

    name: str
    schema: type
    run: RunFn
    description: str


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, schema: type) -> Callable[[RunFn], RunFn]:
    """Decorator registering `run` as experiment `name` with config `schema`."""

    def decorate(run: RunFn) -> RunFn:
        if name in _REGISTRY:
            raise ValueError(f"experiment {name!r} is registered twice")
        description = (run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else ""
        _REGISTRY[name] = Experiment(name, schema, run, description)
        return run

    return decorate


def get(name: str) -> Experiment:
    """The experiment called `name`; `ConfigError` with the closest name if unknown."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown experiment '{name}'{_closest(name, list(_REGISTRY))}; "
            f"known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def names() -> list[str]:
    """Names of all registered experiments, sorted."""
    return sorted(_REGISTRY)

"""Typed experiment configs: schemas with defaults, YAML loading, `key=value` overrides.

A schema is a dataclass (OmegaConf structured config). Loading a YAML merges it into the
schema, so a misspelt key or a wrong type fails up front with a `ConfigError` naming the
full dotted key (and the closest valid key); the CLI prints it as one line.
"""

import dataclasses
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .solve import ADJOINTS, SOLVERS

__all__ = [
    "ConfigError",
    "SolveConfig",
    "TrainConfig",
    "choice",
    "load_config",
    "read_experiment_name",
    "to_yaml",
]


class ConfigError(ValueError):
    """A user mistake in a config file or override: one line, naming the key."""


def choice(default: Any, choices: Sequence[Any]) -> Any:
    """A schema field whose value must be one of `choices`."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


@dataclasses.dataclass
class SolveConfig:
    """How a model's ODE is solved (see `jaxdyn.solve.odeint`)."""

    solver: str = choice("tsit5", SOLVERS)
    rtol: float | None = 1e-6
    atol: float | None = 1e-6
    dt0: float | None = None
    adjoint: str = choice("checkpoint", ADJOINTS)
    max_steps: int = 4096
    batch: str = choice("vmap", ("vmap", "joint"))


@dataclasses.dataclass
class TrainConfig:
    """The optimisation loop (see `jaxdyn.train.fit`)."""

    steps: int = 2000
    batch_size: int = 32
    optimizer: str = choice("adam", ("adam", "adamw", "rmsprop", "sgd"))
    lr: float = 1e-3
    schedule: str = choice("constant", ("constant", "cosine"))
    chunk: int = 100
    checkpoint_every: int = 1


def _closest(word: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _node_keys(schema: DictConfig, dotted: str) -> list[str]:
    node = OmegaConf.select(schema, dotted) if dotted else schema
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _explain(error: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(error, "full_key", None) or getattr(error, "key", None) or "?"
    if isinstance(error, ConfigKeyError):
        parent, _, leaf = str(key).rpartition(".")
        hint = _closest(leaf, _node_keys(schema, parent))
        return ConfigError(f"{source}: unknown config key '{key}'{hint}")
    if isinstance(error, ValidationError):
        detail = str(error).splitlines()[0]
        return ConfigError(f"{source}: bad value for config key '{key}': {detail}")
    return ConfigError(f"{source}: {str(error).splitlines()[0]}")


def _check_choices(cfg: DictConfig, schema: type, prefix: str = "") -> None:
    for field in dataclasses.fields(schema):
        value = cfg[field.name]
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(field.type):
            _check_choices(value, field.type, key + ".")
        elif "choices" in field.metadata and value not in field.metadata["choices"]:
            options = ", ".join(map(str, field.metadata["choices"]))
            raise ConfigError(
                f"bad value for config key '{key}': {value!r} is not one of {options}"
                + _closest(str(value), list(map(str, field.metadata["choices"])))
            )


def read_experiment_name(path: str | Path) -> str:
    """The `experiment:` entry of a config file."""
    raw = _read_yaml(path)
    name = raw.get("experiment")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: missing the top-level key 'experiment' naming the experiment")
    return name


def _read_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = OmegaConf.load(path)
    except Exception as error:
        raise ConfigError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return raw


def load_config(path: str | Path, schema: type, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a YAML file into `schema` and apply `key=value` overrides (dotted keys).

    Returns a read-only `DictConfig` with every default filled in. Raises `ConfigError` for a
    missing file, an unknown key, a wrong type or a value outside a field's choices.
    """
    structured = OmegaConf.structured(schema)
    try:
        cfg = OmegaConf.merge(structured, _read_yaml(path))
    except OmegaConfBaseException as error:
        raise _explain(error, structured, str(path)) from None
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must have the form key=value")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        except OmegaConfBaseException as error:
            raise _explain(error, structured, f"override {override!r}") from None
    _check_choices(cfg, schema)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML text."""
    return OmegaConf.to_yaml(cfg, resolve=True)

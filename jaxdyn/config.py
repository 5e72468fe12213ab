"""Typed experiment configs: schemas with defaults, YAML loading, `key=value` overrides.

A schema is a dataclass (OmegaConf structured config). Loading a YAML merges it into the
schema, so a misspelt key or a wrong type fails up front with a `ConfigError` naming the
full dotted key (and the closest valid key); the CLI prints it as one line.
"""

import dataclasses
import difflib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .solve import ADJOINTS, SOLVERS
from .train import PARALLEL

__all__ = [
    "ConfigError",
    "SolveConfig",
    "TrainConfig",
    "at_least",
    "choice",
    "closest",
    "distinct_names",
    "fraction",
    "load_config",
    "non_negative_list",
    "positive",
    "positive_list",
    "read_experiment_name",
    "to_yaml",
]


class ConfigError(ValueError):
    """A user mistake in a config file or override: one line, naming the key."""


def choice(default: Any, choices: Sequence[Any]) -> Any:
    """A schema field whose value must be one of `choices`."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def distinct_names(default: Sequence[str], options: Sequence[str]) -> Any:
    """A list schema field whose value must be a non-empty list of distinct names from
    `options` (default: the list `default`)."""
    options, default = list(options), list(default)

    def check(values) -> bool:
        return 0 < len(values) == len(set(values)) and set(values) <= set(options)

    return dataclasses.field(
        default_factory=lambda: list(default),
        metadata={"check": (check, f"a non-empty list of distinct names from {options}")},
    )


def at_least(default: Any, low: float) -> Any:
    """A numeric schema field whose value (when not null) must be `>= low`."""
    return dataclasses.field(default=default, metadata={"check": (lambda v: v >= low, f">= {low}")})


def fraction(default: float, *, allow_zero: bool = False) -> Any:
    """A numeric schema field in the open interval `(0, 1)`, or `[0, 1)` with `allow_zero`."""
    if allow_zero:
        return dataclasses.field(
            default=default, metadata={"check": (lambda v: 0 <= v < 1, "in [0, 1)")}
        )
    return dataclasses.field(
        default=default, metadata={"check": (lambda v: 0 < v < 1, "in (0, 1)")}
    )


def section(schema: type, **defaults: Any) -> Any:
    """A nested schema field: a `schema` section with its own defaults, or with `defaults`
    in their place (`train: TrainConfig = section(TrainConfig, steps=500)`)."""
    return dataclasses.field(default_factory=functools.partial(schema, **defaults))


def positive(default: Any) -> Any:
    """A numeric schema field whose value (when not null) must be `> 0`."""
    return dataclasses.field(default=default, metadata={"check": (lambda v: v > 0, "> 0")})


def _number_list(default: Sequence[float], test, description: str) -> Any:
    default = list(default)

    def check(values) -> bool:
        return len(values) > 0 and all(test(v) for v in values)

    return dataclasses.field(
        default_factory=lambda: list(default), metadata={"check": (check, description)}
    )


def positive_list(default: Sequence[float], what: str = "numbers") -> Any:
    """A list schema field whose value must be a non-empty list of numbers `> 0` (default: the
    list `default`); `what` names them in the error."""
    return _number_list(default, lambda v: v > 0, f"a non-empty list of positive {what}")


def non_negative_list(default: Sequence[float], what: str = "numbers") -> Any:
    """As `positive_list`, for numbers `>= 0`."""
    return _number_list(default, lambda v: v >= 0, f"a non-empty list of {what} >= 0")


@dataclasses.dataclass
class SolveConfig:
    """How a model's ODE is solved (see `jaxdyn.solve.odeint`): as there, `rtol`/`atol` null
    means 1e-6 for adaptive steps, and `dt0` with null tolerances means fixed steps."""

    solver: str = choice("tsit5", SOLVERS)
    rtol: float | None = positive(None)
    atol: float | None = positive(None)
    dt0: float | None = positive(None)
    adjoint: str = choice("checkpoint", ADJOINTS)
    max_steps: int | None = at_least(None, 1)  # null: 4096 adaptive, the count for fixed
    batch: str = choice("joint", ("vmap", "joint"))

    @staticmethod
    def check(node: DictConfig, key: str) -> None:
        """The combinations of solver, tolerances and `dt0` that `odeint` refuses (a solver
        without an error estimate given no `dt0`; an implicit solver given `dt0` alone)."""
        from ._solvers import resolve_solver, stepsize_controller

        try:
            stepsize_controller(resolve_solver(node.solver), node.rtol, node.atol, node.dt0)
        except ValueError as error:
            raise ConfigError(
                f"bad value for config key '{key}.solver' ({key}.dt0={node.dt0}, "
                f"rtol={node.rtol}, atol={node.atol}): {error}"
            ) from None


@dataclasses.dataclass
class TrainConfig:
    """The optimisation loop (see `jaxdyn.train.fit`)."""

    steps: int = at_least(2000, 1)
    batch_size: int | None = at_least(32, 1)  # null: the whole data set every step
    optimizer: str = choice("adam", ("adam", "adamw", "rmsprop", "sgd"))
    lr: float = positive(1e-3)
    schedule: str = choice("constant", ("constant", "cosine"))
    chunk: int = at_least(100, 1)
    checkpoint_every: int = at_least(1, 1)
    # Validation (for experiments that define a validation split; see `fit`'s `eval_fn`):
    eval_every: int = at_least(1, 1)  # chunks between evaluations (and after the last step)
    best_metric: str | None = None  # e.g. validation.loss: keep the best model in best/
    mode: str = choice("min", ("min", "max"))  # whether best_metric is better smaller or larger
    patience: int | None = at_least(None, 1)  # null: no early stopping
    ema_decay: float | None = fraction(None, allow_zero=True)  # null: no parameter average
    # Data parallelism (docs/scaling.md): the batch split over this many devices (null: all
    # of them, of every process; 1: no mesh), one program partitioned by XLA ("compiler") or
    # one per device ("shard_map").
    devices: int | None = at_least(1, 1)
    parallel: str = choice("compiler", PARALLEL)

    @staticmethod
    def check(node: DictConfig, key: str) -> None:
        """`patience` needs `best_metric` (the metric that must improve), and `best_metric`
        must be a validation metric (`validation.<name>`); a mesh of `devices` needs that
        many devices and a batch that splits evenly over them."""
        if node.patience is not None and node.best_metric is None:
            raise ConfigError(
                f"bad value for config key '{key}.patience' ({node.patience}): early stopping "
                f"needs {key}.best_metric (e.g. validation.loss)"
            )
        if node.best_metric is not None and not node.best_metric.startswith("validation."):
            raise ConfigError(
                f"bad value for config key '{key}.best_metric': {node.best_metric!r} is not a "
                "validation metric (validation.<name>, e.g. validation.loss)"
            )
        if node.devices is None or node.devices > 1:  # a mesh: JAX's devices must allow it
            import jax

            count = jax.device_count() if node.devices is None else node.devices
            if count > jax.device_count():
                raise ConfigError(
                    f"bad value for config key '{key}.devices' ({node.devices}): JAX sees "
                    f"{jax.device_count()} device(s) ({jax.default_backend()})"
                )
            if node.batch_size is not None and node.batch_size % count:
                raise ConfigError(
                    f"bad value for config key '{key}.batch_size' ({node.batch_size}): it must "
                    f"split evenly over {key}.devices ({count} devices)"
                )


def closest(word: str, options: Sequence[str]) -> str:
    """` (did you mean 'x'?)` for the option closest to `word`, or an empty string."""
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _node_keys(schema: DictConfig, dotted: str) -> list[str]:
    node = OmegaConf.select(schema, dotted) if dotted else schema
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _explain(error: Exception, schema: DictConfig, source: str, key: str | None) -> ConfigError:
    """One line for an OmegaConf error; `key` is the override's key, used when the error
    does not name one."""
    found = getattr(error, "full_key", None) or getattr(error, "key", None)
    key = found or key or "(top level)"
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, ConfigKeyError):
        parent, _, leaf = str(key).rpartition(".")
        hint = closest(leaf, _node_keys(schema, parent))
        return ConfigError(f"{source}: unknown config key '{key}'{hint}")
    return ConfigError(f"{source}: bad value for config key '{key}': {detail}")


def _check_fields(cfg: DictConfig, schema: type, prefix: str = "") -> None:
    """Choices and ranges declared in the schema's field metadata, and a section's own
    `check(node, key)` (a static method of its dataclass) for combinations of its keys."""
    for field in dataclasses.fields(schema):
        value = cfg[field.name]
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(field.type):
            _check_fields(value, field.type, key + ".")
            if hasattr(field.type, "check"):
                field.type.check(value, key)
        elif "choices" in field.metadata and value not in field.metadata["choices"]:
            options = list(map(str, field.metadata["choices"]))
            raise ConfigError(
                f"bad value for config key '{key}': {value!r} is not one of "
                f"{', '.join(options)}{closest(str(value), options)}"
            )
        elif "check" in field.metadata and value is not None:
            test, description = field.metadata["check"]
            if not test(value):
                raise ConfigError(
                    f"bad value for config key '{key}': {value!r} is not {description}"
                )


def read_experiment_name(path: str | Path) -> str:
    """The `experiment:` entry of a config file."""
    raw = _read_yaml(path)
    name = raw.get("experiment")
    if name is None:
        raise ConfigError(f"{path}: missing the top-level key 'experiment' naming the experiment")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: config key 'experiment' must be a name, got {name!r}")
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


def _offending_key(structured: DictConfig, raw: DictConfig) -> str | None:
    """The first top-level key of `raw` that does not merge into the schema on its own."""
    for key in raw:
        try:
            OmegaConf.merge(structured, {key: raw[key]})
        except (OmegaConfBaseException, TypeError):
            return str(key)
    return None


def load_config(path: str | Path, schema: type, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a YAML file into `schema` and apply `key=value` overrides (dotted keys).

    Returns a read-only `DictConfig` with every default filled in. Raises `ConfigError` for a
    missing file, an unknown key, a wrong type or a value outside a field's choices.
    """
    structured = OmegaConf.structured(schema)
    raw = _read_yaml(path)
    try:
        cfg = OmegaConf.merge(structured, raw)
    except (OmegaConfBaseException, TypeError) as error:  # TypeError: mapping onto a list
        raise _explain(error, structured, str(path), _offending_key(structured, raw)) from None
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must have the form key=value")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        except (OmegaConfBaseException, TypeError) as error:
            raise _explain(error, structured, f"override {override!r}", key) from None
    _check_fields(cfg, schema)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML text."""
    return OmegaConf.to_yaml(cfg, resolve=True)

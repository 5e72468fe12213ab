"""Argument checks shared by several packages, so that one kind of mistake gets one wording.

User mistakes raise `ValueError` / `TypeError` naming the argument and the value (see
`docs/api.md`); values that are traced cannot be checked and pass.
"""

from collections.abc import Collection, Mapping
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ON_FAILURE",
    "OnFailure",
    "check_choice",
    "check_count",
    "check_increasing",
    "check_key",
    "check_non_negative",
    "check_on_failure",
    "check_positive",
    "choice_error",
    "lookup",
    "paired_arrays",
]

OnFailure = Literal["raise", "nan", "return"]
ON_FAILURE = ("raise", "nan", "return")

T = TypeVar("T")


def choice_error(argument: str, value: Any, valid: Collection) -> ValueError:
    """`unknown argument='value'; expected one of [...]`."""
    return ValueError(f"unknown {argument}={value!r}; expected one of {sorted(map(str, valid))}")


def check_choice(argument: str, value: Any, valid: Collection) -> None:
    """`value` must be one of `valid`."""
    if value not in valid:
        raise choice_error(argument, value, valid)


def lookup(argument: str, value: str | T, table: Mapping[str, T]) -> T:
    """`table[value]` for a name, or `value` itself when it is callable (a user's own)."""
    if callable(value):
        return value
    if value not in table:
        raise choice_error(argument, value, table)
    return table[value]


def check_on_failure(value: Any) -> None:
    """`on_failure` must be `raise`, `nan` or `return`."""
    check_choice("on_failure", value, ON_FAILURE)


def _real_scalar(value: Any) -> bool:
    """Whether `value` is one real number (Python, NumPy or JAX, not a `bool`)."""
    is_real = isinstance(value, int | float | np.number | np.ndarray | jax.Array) and not (
        isinstance(value, bool)
    )
    return is_real and np.ndim(value) == 0 and np.isrealobj(value)


def check_positive(argument: str, value: Any) -> None:
    """A positive real scalar (Python, NumPy or JAX); traced values cannot be checked."""
    if isinstance(value, jax.core.Tracer):
        return
    if not _real_scalar(value) or not float(value) > 0:
        raise ValueError(f"{argument} must be a positive number, got {value!r}")


def check_non_negative(argument: str, value: Any) -> None:
    """A real scalar `>= 0` (Python, NumPy or JAX); traced values cannot be checked."""
    if isinstance(value, jax.core.Tracer):
        return
    if not _real_scalar(value) or not float(value) >= 0:
        raise ValueError(f"{argument} must be a number >= 0, got {value!r}")


def check_count(argument: str, value: Any, low: int = 1) -> None:
    """An integer (not a bool) of at least `low`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{argument} must be an int >= {low}, got {value!r}")


def check_key(key: Any, caller: str) -> None:
    """One PRNG key: a typed key of shape `()` (`jax.random.key`) or a raw `uint32[2]` key."""
    is_typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    is_raw = (
        isinstance(key, jax.Array | jax.core.Tracer)
        and key.dtype == jnp.uint32
        and key.shape == (2,)
    )
    if not (is_typed and key.shape == ()) and not is_raw:
        raise TypeError(
            f"{caller} needs key=jax.random.key(seed) (one key; per-sample keys are split from "
            f"it), got {type(key).__name__} with shape {getattr(key, 'shape', None)}"
        )


def check_increasing(argument: str, times: Any) -> None:
    """Concrete times (a NumPy array) that increase strictly, naming the first pair that does
    not."""
    diffs = np.diff(times)
    if not np.all(diffs > 0):
        bad = int(np.argmin(diffs > 0))
        raise ValueError(
            f"{argument} must be strictly increasing; {argument}[{bad}]={float(times[bad])} is "
            f"followed by {argument}[{bad + 1}]={float(times[bad + 1])}"
        )


def check_times(ts: Any) -> tuple[np.ndarray | None, jax.Array]:
    """`(times, ts)`: a host copy of the times when they are known at trace time (NumPy input
    stays concrete under `jit`, where `jnp.asarray` would make it a tracer; `None` when traced)
    and `ts` as a JAX array, checked: one axis of at least 2 floating-point times, strictly
    increasing where they are known."""
    times = None if isinstance(ts, jax.core.Tracer) else np.asarray(ts)
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least 2 times, got shape {ts.shape}")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        raise TypeError(f"ts must be floating point, got dtype {ts.dtype}")
    if times is not None:
        check_increasing("ts", times)
    return times, ts


def paired_arrays(caller: str, **pair: Any) -> tuple[jax.Array, jax.Array]:
    """The two arrays of `pair` (keyword names as the caller's arguments), which must have one
    shape: `paired_arrays("r2_score", pred=pred, target=target)`."""
    (a_name, a), (b_name, b) = pair.items()
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(
            f"{caller} needs {a_name} and {b_name} of one shape, got {a_name} {a.shape}, "
            f"{b_name} {b.shape}"
        )
    return a, b

"""Argument checks shared by the optimisers: concrete values are checked when the transform is
built; traced values (a transform built inside `jit` or `vmap`) and schedules pass through."""

import numbers

import numpy as np


def _concrete(value) -> float | None:
    if isinstance(value, numbers.Real | np.ndarray | np.generic) and np.ndim(value) == 0:
        return float(value)
    return None


def check_rate(name: str, value) -> None:
    """`value` is a schedule (a callable of the step count) or a positive number."""
    if callable(value):
        return
    number = _concrete(value)
    if number is not None and not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be positive (or an optax schedule), got {value!r}")


def check_at_least(name: str, value, low: float, *, strict: bool = False) -> None:
    number = _concrete(value)
    ok = number is None or (np.isfinite(number) and (number > low if strict else number >= low))
    if not ok:
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")


def check_below(name: str, value, high: float) -> None:
    number = _concrete(value)
    if number is not None and not number < high:
        raise ValueError(f"{name} must be < {high}, got {value!r}")

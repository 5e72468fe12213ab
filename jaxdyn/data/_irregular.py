"""Irregularly sampled multivariate time series: missing observations and their paths.

Series are arrays `values` of shape `(*batch, time, channels)` on a shared grid `ts`, with
NaN marking a missing observation, as in the irregular-sampling experiments of Kidger,
Morrill, Foster & Lyons (2020), "Neural Controlled Differential Equations for Irregular
Time Series", and Oh, Lim & Kim (2024), "Stable Neural Stochastic Differential Equations
in Analyzing Irregular Time Series Data". A neural CDE reads them through a continuous path:
`hermite_coefficients` fits the backward-Hermite cubic spline (Morrill et al. 2021) and
`cubic_path` turns the coefficients of one series into a `diffrax.CubicInterpolation`.
"""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

__all__ = [
    "HermiteCoefficients",
    "augment",
    "cubic_path",
    "drop_observations",
    "fill_forward",
    "hermite_coefficients",
    "observation_counts",
    "observation_mask",
]

# (d, c, b, a): each of shape (*batch, time - 1, channels), as diffrax.CubicInterpolation takes.
HermiteCoefficients = tuple[Array, Array, Array, Array]


def _values(values: ArrayLike) -> Array:
    """`values` as a floating-point array of shape `(*batch, time, channels)`."""
    values = jnp.asarray(values)
    if values.ndim < 2:
        raise ValueError(
            f"values must have shape (*batch, time, channels), got shape {values.shape}; "
            "give a scalar series the shape (time, 1)"
        )
    if not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(f"values must be floating point (NaN marks missing), got {values.dtype}")
    return values


def _series(ts: ArrayLike, values: ArrayLike) -> tuple[Array, Array]:
    """`ts` and `values` as arrays, checked: values `(*batch, time, channels)` on the grid
    `ts` of shape `(time,)`."""
    ts, values = jnp.asarray(ts), _values(values)
    if ts.ndim != 1 or ts.shape[0] != values.shape[-2]:
        raise ValueError(
            f"ts must have shape (time,) matching values of shape (*batch, time, channels); "
            f"got ts {ts.shape} and values {values.shape}"
        )
    return ts, values


def drop_observations(
    values: Float[ArrayLike, "*batch time channels"], rate: float, *, key: PRNGKeyArray
) -> Float[Array, "*batch time channels"]:
    """Mark a fraction `rate` of each series' time steps as missing (NaN in every channel).

    Each series independently loses `floor(rate · time)` time steps chosen uniformly
    without replacement (drawn from `key`), the protocol of Kidger et al. (2020, §4.1) for
    30%, 50% and 70% missing data, reused by Oh, Lim & Kim (2024). `rate` is in `[0, 1)`.
    """
    values = _values(values)
    if not isinstance(rate, jax.core.Tracer) and not (
        np.ndim(rate) == 0 and np.isrealobj(rate) and 0 <= float(rate) < 1
    ):
        raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
    *batch, time, _ = values.shape
    count = jnp.floor(rate * time)
    # A uniformly random ranking of the time steps of every series; the lowest are dropped.
    noise = jax.random.uniform(key, (*batch, time))
    ranks = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)
    dropped = ranks < count
    return jnp.where(dropped[..., None], jnp.nan, values)


def observation_mask(
    values: Float[ArrayLike, "*batch time channels"],
) -> Bool[Array, "*batch time channels"]:
    """True where a value was observed (not NaN)."""
    values = _values(values)
    return ~jnp.isnan(values)


def observation_counts(
    values: Float[ArrayLike, "*batch time channels"],
) -> Float[Array, "*batch time channels"]:
    """The number of observations of each channel up to and including each time.

    Appended as extra channels, this "observational intensity" lets a CDE see where data were
    missing, which a fill-forward interpolation alone hides (Kidger et al. 2020, §3.5).
    """
    values = jnp.asarray(values)
    return jnp.cumsum(observation_mask(values), axis=-2).astype(values.dtype)


def fill_forward(
    values: Float[ArrayLike, "*batch time channels"],
) -> Float[Array, "*batch time channels"]:
    """Replace each NaN by the last observation before it in the same channel.

    NaNs before a channel's first observation stay NaN. Vectorised (a cumulative maximum of
    the indices of observations) and jittable.
    """
    values = jnp.asarray(values)
    mask = observation_mask(values)
    time = values.shape[-2]
    index = jnp.arange(time).reshape(time, 1)
    last = jax.lax.cummax(jnp.where(mask, index, -1), axis=values.ndim - 2)
    filled = jnp.take_along_axis(values, jnp.maximum(last, 0), axis=-2)
    return jnp.where(last >= 0, filled, jnp.nan)


def augment(
    ts: Float[ArrayLike, " time"],
    values: Float[ArrayLike, "*batch time channels"],
    *,
    time: bool = True,
    counts: bool = False,
) -> Float[Array, "*batch time augmented"]:
    """Channels `[t, counts, values]`: time first (`time=True`), then the observation counts
    of each channel (`counts=True`), then the values, as Kidger et al. (2020) feed a CDE.

    Time as a channel makes the path injective and lets the CDE see the sampling times; it
    is observed at every grid time, including those whose values are missing.
    """
    ts, values = _series(ts, values)
    channels = []
    if time:
        channels.append(jnp.broadcast_to(ts[:, None], values.shape[:-1] + (1,)))
    if counts:
        channels.append(observation_counts(values))
    channels.append(values)
    return jnp.concatenate([c.astype(values.dtype) for c in channels], axis=-1)


def _first_observed(values: Array) -> Array:
    """Each channel's first observation (0 for a channel never observed), shape `(channels,)`."""
    mask = ~jnp.isnan(values)
    first = jnp.argmax(mask, axis=0)
    chosen = jnp.take_along_axis(values, first[None, :], axis=0)[0]
    return jnp.where(mask.any(axis=0), chosen, 0.0)


def hermite_coefficients(
    ts: Float[ArrayLike, " time"], values: Float[ArrayLike, "*batch time channels"]
) -> HermiteCoefficients:
    """Coefficients of the cubic Hermite spline with backward differences through the data.

    On `[t_i, t_{i+1}]` the spline matches the observations at both ends and has slope
    `(x_i - x_{i-1}) / (t_i - t_{i-1})` at `t_i`, so it depends only on data up to `t_{i+1}`
    (Morrill, Kidger, Yang & Lyons 2021, "Neural CDEs for Online Prediction Tasks"; diffrax's
    `backward_hermite_coefficients`). Missing values (NaN) are skipped per channel: a gap is
    bridged by one cubic from the observation before it to the one after it (not a flat
    fill-forward). NaNs before a channel's first observation take that observation (0 if it
    has none) and NaNs after its last are filled forward, so the path is finite everywhere (a
    channel observed at its first time only is constant, one never observed is 0).

    Returns a tuple `(d, c, b, a)` of arrays of shape `(*batch, time - 1, channels)`; the
    path of one series is `cubic_path(ts, coefficients)` (vmap over the batch).
    """
    ts, values = _series(ts, values)
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        raise TypeError(f"ts must be floating point, got dtype {ts.dtype}")

    def hermite(series):
        return dfx.backward_hermite_coefficients(
            ts,
            series,
            replace_nans_at_start=_first_observed(series),
            fill_forward_nans_at_end=True,
        )

    def one(series):
        coefficients = hermite(series)
        # diffrax returns NaN coefficients for a channel observed at its first time only, or
        # never: such a channel (any non-finite coefficient) is filled forward first (leading
        # NaNs: the first observation, 0 if none), a constant path.
        bad = jnp.any(jnp.stack([~jnp.isfinite(c) for c in coefficients]), axis=(0, 1))
        filled = fill_forward(series)
        fixed = hermite(jnp.where(jnp.isnan(filled), _first_observed(series), filled))
        return tuple(jnp.where(bad, f, c) for c, f in zip(coefficients, fixed, strict=True))

    for _ in range(values.ndim - 2):
        one = jax.vmap(one)
    return one(values)


def cubic_path(
    ts: Float[ArrayLike, " time"], coefficients: HermiteCoefficients
) -> dfx.CubicInterpolation:
    """The continuous path `X` of one series from its `hermite_coefficients`."""
    ts = jnp.asarray(ts)
    if len(coefficients) != 4:
        raise ValueError(
            f"coefficients must be the 4-tuple (d, c, b, a) of hermite_coefficients, got "
            f"{len(coefficients)} entries"
        )
    shapes = [jnp.shape(c) for c in coefficients]
    if any(len(s) != 2 or s != shapes[0] for s in shapes) or shapes[0][0] != ts.shape[0] - 1:
        raise ValueError(
            f"coefficients of one series must each have shape (time - 1, channels) = "
            f"({ts.shape[0] - 1}, channels) for ts of shape {ts.shape}, got {shapes}; "
            "for a batch, jax.vmap over the coefficients"
        )
    return dfx.CubicInterpolation(ts, tuple(coefficients))

"""Synthetic spiking data driven by a Lorenz attractor, and Neural Latents Benchmark splits.

The Lorenz system (Lorenz 1963)

    dx/dt = σ (y - x),    dy/dt = x (ρ - z) - y,    dz/dt = x y - β z,

with σ = 10, ρ = 28, β = 8/3, is the latent state `s(t)` of a population of Poisson
neurons, as in the Lorenz experiments of LFADS (Pandarinath et al. 2018) and LangevinFlow
(Song et al. 2025). Its state standardised over the data set, `z = (s - mean) / std` (per
coordinate), drives each neuron's log firing rate through a random linear readout,

    log λ_n(t) = b_n + C_n · z(t)   (λ in Hz),    counts_n(bin) ~ Poisson(λ_n(t) Δ),

evaluated at the bin centres, with bin width `Δ` (10 ms by default). `C_n = g u_n` with
`u_n` uniform on the unit sphere and `b_n = log r_n`, `r_n` log-uniform in
`base_rate_range`: at the defaults (`g = 0.5`, `r_n` in 8-14 Hz) the median rate is about
11 Hz, 98% of the rates lie between 3 and 40 Hz and the neurons' peak rates have a median of
about 42 Hz (the largest about 80 Hz). Each trial starts at a random state on the attractor:
a random point near the attractor is integrated for `burn_in` Lorenz time units first.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import check_count, check_positive
from ..solve import odeint
from ._systems import LORENZ_PARAMETERS, lorenz_field

__all__ = [
    "HeldoutSplit",
    "SpikeData",
    "heldout_split",
    "lorenz_spikes",
]


class SpikeData(NamedTuple):
    """Spike counts of a neural population and what generated them.

    - `spikes`: counts per bin, shape `(trials, bins, neurons)`, float.
    - `rates`: the expected counts per bin `λ Δ` the counts were drawn from, same shape.
    - `latents`: the Lorenz state (unstandardised) at the bin centres, `(trials, bins, 3)`.
    - `bin_size`: the bin width `Δ` in seconds.
    """

    spikes: Float[Array, "trials bins neurons"]
    rates: Float[Array, "trials bins neurons"]
    latents: Float[Array, "trials bins 3"]
    bin_size: float


class HeldoutSplit(NamedTuple):
    """Index arrays of a Neural Latents Benchmark split (sorted, disjoint, covering all).

    - `heldin_neurons`, `heldout_neurons`: neurons given to the model / to be predicted.
    - `train_trials`, `test_trials`: trials with all neurons observed / with only held-in
      neurons given (their held-out neurons are scored, e.g. by co-bps).
    """

    heldin_neurons: Int[Array, " heldin"]
    heldout_neurons: Int[Array, " heldout"]
    train_trials: Int[Array, " train"]
    test_trials: Int[Array, " test"]


def lorenz_spikes(
    *,
    key: PRNGKeyArray,
    num_trials: int = 300,
    num_neurons: int = 50,
    num_bins: int = 100,
    bin_size: float = 0.01,
    time_scale: float = 1.0,
    burn_in: float = 10.0,
    gain: float = 0.5,
    base_rate_range: tuple[float, float] = (8.0, 14.0),
) -> SpikeData:
    """Poisson spike counts of `num_neurons` neurons whose log rates are a random linear
    readout of a standardised Lorenz state (see the module docstring for the model).

    **Arguments:**

    - `key`: the randomness (initial states, readout, spikes).
    - `num_trials`, `num_neurons`, `num_bins`: the shape of the data.
    - `bin_size`: the bin width `Δ` in seconds (trials last `num_bins Δ` seconds).
    - `time_scale`: Lorenz time units per second. At 1.0 a 1-s trial covers about 1.5 loops
      around a wing (the attractor's rotation period is about 0.7 time units).
    - `burn_in`: Lorenz time units integrated from a random point (uniform in a box around
      the attractor) before the trial starts, so every trial starts on the attractor.
    - `gain`: the norm `g` of each readout row `C_n` (the log-rate modulation per standard
      deviation of the latent along `u_n`).
    - `base_rate_range`: `(low, high)` in Hz; `exp(b_n)` is log-uniform on it.

    The latent is solved by `odeint` (Dopri5, rtol = atol = 1e-8) and saved at the bin
    centres `(i + ½) Δ`, `i < num_bins`. Standardisation uses the mean and standard deviation
    of the latents of this data set (over trials and bins).

    **Returns:** a `SpikeData`; `rates` are expected counts per bin (`λ Δ`).
    """
    check_count("num_trials", num_trials)
    check_count("num_neurons", num_neurons)
    check_count("num_bins", num_bins, 2)
    for name, value in (("bin_size", bin_size), ("time_scale", time_scale), ("gain", gain)):
        check_positive(name, value)
    if burn_in < 0:
        raise ValueError(f"lorenz_spikes needs burn_in >= 0, got burn_in={burn_in!r}")
    low, high = base_rate_range
    if not 0 < low <= high:
        raise ValueError(
            f"lorenz_spikes needs 0 < low <= high in base_rate_range, got {base_rate_range!r}"
        )
    spikes, rates, latents = _lorenz_spikes(
        key,
        num_trials,
        num_neurons,
        num_bins,
        float(bin_size),
        float(time_scale),
        float(burn_in),
        float(gain),
        (float(low), float(high)),
    )
    return SpikeData(spikes=spikes, rates=rates, latents=latents, bin_size=float(bin_size))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7, 8))
def _lorenz_spikes(
    key, num_trials, num_neurons, num_bins, bin_size, time_scale, burn_in, gain, rate_range
):
    dtype = jnp.result_type(float)
    init_key, direction_key, base_key, spike_key = jax.random.split(key, 4)
    # A box around the attractor (x, y in ±20, z in 5..45); the burn-in carries every point
    # onto the attractor (its transients decay within a few time units).
    y0 = jax.random.uniform(
        init_key,
        (num_trials, 3),
        dtype,
        minval=jnp.array([-20.0, -20.0, 5.0]),
        maxval=jnp.array([20.0, 20.0, 45.0]),
    )
    centres = (jnp.arange(num_bins, dtype=dtype) + 0.5) * bin_size * time_scale
    ts = jnp.concatenate([jnp.zeros(1, dtype), burn_in + centres])
    sol = odeint(
        lorenz_field,
        y0,
        ts,
        args=tuple(jnp.asarray(p, dtype) for p in LORENZ_PARAMETERS),
        solver="dopri5",
        rtol=1e-8,
        atol=1e-8,
        max_steps=100_000,
        batch="vmap",
    )
    latents = sol.ys[:, 1:]  # (trials, bins, 3)
    flat = latents.reshape(-1, 3)
    z = (latents - flat.mean(0)) / flat.std(0)
    directions = jax.random.normal(direction_key, (num_neurons, 3), dtype)
    readout = gain * directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    log_low, log_high = jnp.log(rate_range[0]), jnp.log(rate_range[1])
    bias = jax.random.uniform(base_key, (num_neurons,), dtype, log_low, log_high)
    rates = jnp.exp(bias + z @ readout.T) * bin_size
    spikes = jax.random.poisson(spike_key, rates).astype(dtype)
    return spikes, rates, latents


def heldout_split(
    num_trials: int,
    num_neurons: int,
    *,
    key: PRNGKeyArray,
    neuron_fraction: float = 0.2,
    trial_fraction: float = 0.2,
) -> HeldoutSplit:
    """A random Neural Latents Benchmark split (Pei et al. 2021): `round(neuron_fraction ·
    num_neurons)` held-out neurons and `round(trial_fraction · num_trials)` test trials, the
    rest held-in neurons and train trials. Every group must be non-empty.

    Co-smoothing: a model sees all neurons of the train trials and the held-in neurons of
    the test trials, and predicts the held-out neurons' rates on the test trials.

    **Returns:** a `HeldoutSplit` of sorted index arrays.
    """
    check_count("num_trials", num_trials, 2)
    check_count("num_neurons", num_neurons, 2)
    for name, fraction in (
        ("neuron_fraction", neuron_fraction),
        ("trial_fraction", trial_fraction),
    ):
        if not 0 < fraction < 1:
            raise ValueError(f"heldout_split needs 0 < {name} < 1, got {name}={fraction!r}")
    num_heldout = round(neuron_fraction * num_neurons)
    num_test = round(trial_fraction * num_trials)
    if not 0 < num_heldout < num_neurons:
        raise ValueError(
            f"heldout_split: neuron_fraction={neuron_fraction!r} of num_neurons={num_neurons} "
            f"holds out {num_heldout} neurons; need at least one held-in and one held-out"
        )
    if not 0 < num_test < num_trials:
        raise ValueError(
            f"heldout_split: trial_fraction={trial_fraction!r} of num_trials={num_trials} "
            f"gives {num_test} test trials; need at least one train and one test trial"
        )
    neuron_key, trial_key = jax.random.split(key)
    neurons = jax.random.permutation(neuron_key, num_neurons)
    trials = jax.random.permutation(trial_key, num_trials)
    return HeldoutSplit(
        heldin_neurons=jnp.sort(neurons[num_heldout:]),
        heldout_neurons=jnp.sort(neurons[:num_heldout]),
        train_trials=jnp.sort(trials[num_test:]),
        test_trials=jnp.sort(trials[:num_test]),
    )

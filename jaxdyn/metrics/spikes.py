"""Poisson likelihood metrics of predicted firing rates: bits per spike and co-bps, as the
Neural Latents Benchmark defines them (Pei et al. 2021; `nlb_tools.evaluation`)."""

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, Float, Scalar

from .._checks import paired_arrays

__all__ = ["ZERO_RATE", "bits_per_spike", "co_bps"]

ZERO_RATE = 1e-9
"""Predicted rates equal to zero are replaced by this value, as in `nlb_tools`."""


def bits_per_spike(
    rates: Float[ArrayLike, "*batch neurons"], spikes: Float[ArrayLike, "*batch neurons"]
) -> Scalar:
    """Bits per spike of predicted rates, exactly as `nlb_tools.evaluation.bits_per_spike`.

    With `r` the predicted expected counts per bin, `k` the observed counts and the null
    model `r̄_n`, the mean count of neuron `n` over all trials and bins of `spikes` (the last
    axis indexes neurons), the Poisson negative log-likelihoods are

        NLL(r) = Σ r - k log r + log k!,

    and

        bps = (NLL(r̄) - NLL(r)) / (Σ k · ln 2).

    The `log k!` terms cancel in the difference, which is summed elementwise,
    `Σ (r̄ - r) - k (log r̄ - log r)` (the same value as NLB's difference of two totals,
    without its cancellation error in float32). A model no better than each neuron's mean
    rate scores 0; a perfect model of Poisson data scores the information its rates carry
    beyond the means.

    NaN handling and zero rates as in NLB: bins where `spikes` is NaN are left out (of the
    likelihoods, the null means and the spike total); predicted rates equal to 0 (and null
    rates of neurons without spikes) are replaced by `ZERO_RATE = 1e-9`. Predicted rates that
    are NaN, infinite or negative in the remaining bins are an error: a `ValueError` naming
    their count for concrete inputs (NLB asserts on NaN and negative rates; an infinite rate,
    e.g. from a failed solve, would score minus infinity), and a NaN result under
    `jit`/tracing.

    **Arguments:**

    - `rates`: predicted expected counts per bin (rate × bin width), e.g. `(trials, bins,
      neurons)`.
    - `spikes`: the observed counts, same shape.

    **Returns:** a scalar, bits per spike.
    """
    rates, spikes = paired_arrays("bits_per_spike", rates=rates, spikes=spikes)
    if rates.ndim < 1:
        raise ValueError("bits_per_spike needs arrays with a neuron axis (the last)")
    bps, bad, invalid, observed = _bits_per_spike(rates, spikes)
    if not isinstance(bad, jax.core.Tracer) and bool(bad):
        raise ValueError(
            f"bits_per_spike: {int(invalid)} of {int(observed)} rate "
            "predictions (where spikes are observed) are NaN, infinite or negative"
        )
    return bps


@jax.jit  # one program per shape (eagerly, each of the ~20 operations compiles its own)
def _bits_per_spike(rates, spikes):
    """`(bps, any invalid rate, #invalid, #observed)`; bps is NaN where a rate is invalid."""
    dtype = jnp.result_type(rates.dtype, spikes.dtype, float)
    rates, spikes = rates.astype(dtype), spikes.astype(dtype)
    observed = ~jnp.isnan(spikes)
    invalid = observed & ~(jnp.isfinite(rates) & (rates >= 0))
    bad = jnp.any(invalid)
    counts = jnp.where(observed, spikes, 0.0)
    model = jnp.where(observed & (rates != 0), rates, ZERO_RATE)
    batch_axes = tuple(range(spikes.ndim - 1))
    null = jnp.sum(counts, batch_axes) / jnp.sum(observed, batch_axes)  # np.nanmean
    null = jnp.where(null == 0, ZERO_RATE, null)
    difference = (null - model) - counts * (jnp.log(null) - jnp.log(model))
    bps = jnp.sum(jnp.where(observed, difference, 0.0)) / (jnp.sum(counts) * jnp.log(2.0))
    return jnp.where(bad, jnp.nan, bps), bad, jnp.sum(invalid), jnp.sum(observed)


def co_bps(
    pred_heldout_rates: Float[ArrayLike, "trials bins heldout"],
    heldout_spikes: Float[ArrayLike, "trials bins heldout"],
) -> Scalar:
    """Co-smoothing bits per spike (NLB's `co-bps`): `bits_per_spike` of the rates predicted
    for the held-out neurons of the test trials, from the held-in neurons only, against
    those neurons' counts. (The null model is the held-out neurons' mean counts over the
    test trials, as NLB evaluates it.)"""
    return bits_per_spike(pred_heldout_rates, heldout_spikes)

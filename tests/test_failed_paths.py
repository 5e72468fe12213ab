"""Experiments that evaluate with `on_failure="nan"` count the failed paths and compute their
metrics on the rest (docs/api.md). Checked with stand-in models whose chosen samples fail, so
that nothing here compiles a solve."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from jaxdyn.experiments._records import failed_rows
from jaxdyn.experiments.langevin_flow import _predict_fn
from jaxdyn.experiments.latent_sde_sine import LatentSDESineConfig, posterior_band, sine_data
from jaxdyn.models import LatentOutput

KEY = jax.random.key(0)


def test_failed_rows_marks_every_slice_with_a_non_finite_entry():
    values = np.zeros((4, 3, 2))
    values[1, 2, 0], values[3, 0, 1] = np.nan, np.inf
    np.testing.assert_array_equal(failed_rows(values), [False, True, False, True])
    np.testing.assert_array_equal(failed_rows(values, axis=1), [True, False, True])


class _FlakySampler(eqx.Module):
    """A stand-in VAE: log-rates `log(1 + i)` for sample `i` of a trial, NaN (a failed latent
    solve) when `i` is in `fail`; the sample index is read from the key's first word."""

    fail: tuple[int, ...]
    bins: int = 5
    neurons: int = 3

    def __call__(self, spikes, *, key):
        i = jax.random.key_data(key)[0] % 1000
        value = jnp.where(jnp.isin(i, jnp.asarray(self.fail)), jnp.nan, jnp.log1p(i))
        log_rates = jnp.full((self.bins, self.neurons), value)
        return LatentOutput(log_rates, log_rates[:, :2], jnp.zeros(()))


def test_langevin_flow_predictions_average_the_successful_samples_and_count_the_rest(
    monkeypatch,
):
    samples = 4
    # Sample i of every trial gets a key whose first word is i (split is replaced).
    monkeypatch.setattr(
        jax.random, "split", lambda key, n: jax.random.wrap_key_data(
            jnp.stack([jnp.arange(n), jnp.zeros(n, int)], 1).astype(jnp.uint32))
    )  # fmt: skip
    predict = _predict_fn(samples)
    spikes = jnp.zeros((3, 5, 2))
    rates, latents, failed = predict(_FlakySampler(fail=(1, 3)), spikes, key=KEY)
    np.testing.assert_array_equal(failed, [2, 2, 2])
    np.testing.assert_allclose(rates, (1 + 3) / 2)  # exp(log(1 + i)) over i = 0, 2
    np.testing.assert_allclose(latents, (np.log(1) + np.log(3)) / 2)
    rates, _, failed = predict(_FlakySampler(fail=()), spikes, key=KEY)
    np.testing.assert_array_equal(failed, 0)
    np.testing.assert_allclose(rates, (1 + 2 + 3 + 4) / 4)  # the plain mean


class _Posterior(eqx.Module):
    """A stand-in latent SDE whose posterior paths are the truth plus an offset per sample;
    the samples in `fail` are NaN (failed solves)."""

    offsets: jax.Array
    fail: tuple[int, ...]

    def sample_posterior(self, ts, xs, obs_ts, *, key, n_samples):
        paths = 0.8 * jnp.sin(2 * jnp.pi * jnp.asarray(ts))[None, :, None] + self.offsets
        bad = jnp.isin(jnp.arange(n_samples), jnp.asarray(self.fail))[:, None, None]
        return jnp.where(bad, jnp.nan, paths)

    def decode(self, zs):
        return zs


def test_latent_sde_sine_band_leaves_failed_paths_out_and_counts_them():
    cfg = OmegaConf.structured(LatentSDESineConfig)
    cfg.data.num_test, cfg.evaluation.eval_samples, cfg.evaluation.grid_points = 20, 40, 11
    cfg.data.num_validation = 20
    obs_ts, xs, heldout = sine_data(cfg)
    offsets = jnp.linspace(-0.1, 0.1, 40)[:, None, None]
    good = posterior_band(cfg, _Posterior(offsets, ()), obs_ts, xs, heldout, key=KEY)
    assert good["failed_paths"] == 0 and good["coverage"] == 1.0  # the truth is inside
    assert good["validation_coverage"] == 1.0
    # Failing the samples with the largest offsets moves the band below the truth.
    failing = tuple(range(20, 40))
    bad = posterior_band(cfg, _Posterior(offsets, failing), obs_ts, xs, heldout, key=KEY)
    assert bad["failed_paths"] == 20 and bad["coverage"] == 0.0
    assert bad["validation_coverage"] == 0.0
    assert np.isfinite(bad["band_mean_width"]) and np.isfinite(bad["median_rmse"])
    with pytest.raises(RuntimeError, match="all 40 posterior paths failed"):
        posterior_band(cfg, _Posterior(offsets, tuple(range(40))), obs_ts, xs, heldout, key=KEY)

"""Synthetic spiking data (`jaxdyn.data`): shapes, rates, Poisson statistics, the Lorenz
latent, reproducibility and the Neural Latents Benchmark split."""

import jax
import numpy as np
import pytest

from jaxdyn.data import (
    LORENZ_PARAMETERS,
    SpikeData,
    heldout_split,
    lorenz_field,
    lorenz_spikes,
)
from jaxdyn.metrics.regression import linear_r2

# 100 trials (not the default 300) keeps the file fast; every call here has the same static
# arguments, so the generator compiles once.
NUM_TRIALS = 100


@pytest.fixture(scope="module")
def data() -> SpikeData:
    return lorenz_spikes(key=jax.random.key(0), num_trials=NUM_TRIALS)


def test_shapes_and_types(data):
    assert isinstance(data, SpikeData)
    assert data.spikes.shape == data.rates.shape == (NUM_TRIALS, 100, 50)
    assert data.latents.shape == (NUM_TRIALS, 100, 3)
    assert data.bin_size == 0.01
    spikes = np.asarray(data.spikes)
    assert np.issubdtype(spikes.dtype, np.floating)
    assert np.all(spikes >= 0) and np.all(spikes == np.round(spikes))


def test_rates_lie_between_a_few_and_about_fifty_hz(data):
    hz = np.asarray(data.rates) / data.bin_size
    low, median, high = np.percentile(hz, [1, 50, 99])
    assert 1.5 < low < 5 and 5 < median < 20 and 25 < high < 60
    assert 0.3 < hz.min() and hz.max() < 150
    peaks = hz.max(axis=(0, 1))
    assert 25 < np.median(peaks) < 60


def test_counts_are_poisson_given_the_rates(data):
    k, r = np.asarray(data.spikes), np.asarray(data.rates)
    # Mean: Σ(k - r) has variance Σ r under Poisson(r); dispersion: Σ((k - r)² - k) has mean 0
    # and variance Σ (2r²) (fourth central moment r + 3r² minus the covariance with k). Five
    # standard deviations: a false alarm once in ~10⁶ runs.
    assert abs(np.sum(k - r)) < 5 * np.sqrt(np.sum(r))
    assert abs(np.sum((k - r) ** 2 - k)) < 5 * np.sqrt(np.sum(2 * r**2 + 4 * r**3 + r))
    # Counts per bin at ~11 Hz × 10 ms are mostly 0 or 1: the empirical frequency of zeros
    # matches Σ exp(-r).
    zeros = np.sum(k == 0)
    expected = np.sum(np.exp(-r))
    assert abs(zeros - expected) < 5 * np.sqrt(np.sum(np.exp(-r) * (1 - np.exp(-r))))


def test_latents_follow_the_lorenz_field_at_the_time_scale(data):
    lat = np.asarray(data.latents)
    h = data.bin_size * 1.0  # Lorenz time units per bin at time_scale = 1
    derivative = (lat[:, 2:] - lat[:, :-2]) / (2 * h)
    field = np.asarray(lorenz_field(0.0, lat[:, 1:-1], LORENZ_PARAMETERS))
    error = np.linalg.norm(derivative - field, axis=-1) / np.linalg.norm(field, axis=-1)
    # Central differences err by h² |y'''| / 6 ≈ 1e-4 |y'''|; on the attractor that is ~1%
    # of |y'|.
    assert np.median(error) < 0.01
    # On the attractor: bounded, z around its long-run mean ≈ 23.5.
    assert np.all(np.abs(lat[..., :2]) < 30) and np.all((lat[..., 2] > 0) & (lat[..., 2] < 55))
    assert abs(lat[..., 2].mean() - 23.5) < 2.0
    # About 1.5 loops per 1-s trial (z crosses its mean twice per loop).
    z = lat[..., 2] - lat[..., 2].mean()
    loops = np.mean(np.sum(np.diff(np.sign(z), axis=1) != 0, axis=1)) / 2
    assert 0.8 < loops < 2.5


def test_log_rates_are_an_affine_readout_of_the_latent(data):
    # log λ = b + C (s - mean)/std is affine in s: a least-squares affine map explains it
    # exactly (up to float64 rounding).
    log_rates = np.log(np.asarray(data.rates))
    assert float(linear_r2(data.latents, log_rates)) == pytest.approx(1.0, abs=1e-9)


def test_reproducible_by_key():
    # On 4 trials: one small program and three short runs, not two more runs of the
    # 100-trial solve (~3 s each); the key reaches the same code at every size.
    data = lorenz_spikes(key=jax.random.key(0), num_trials=4)
    again = lorenz_spikes(key=jax.random.key(0), num_trials=4)
    for a, b in zip(data[:3], again[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    other = lorenz_spikes(key=jax.random.key(1), num_trials=4)
    assert not np.array_equal(data.spikes, other.spikes)
    assert not np.array_equal(data.latents, other.latents)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_trials": 0}, "num_trials"),
        ({"num_neurons": 2.5}, "num_neurons"),
        ({"num_bins": 1}, "num_bins"),
        ({"bin_size": -0.01}, "bin_size"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"gain": 0.0}, "gain"),
        ({"burn_in": -1.0}, "burn_in"),
        ({"base_rate_range": (10.0, 5.0)}, "base_rate_range"),
    ],
)
def test_lorenz_spikes_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lorenz_spikes(key=jax.random.key(0), **kwargs)


def test_heldout_split_is_a_disjoint_partition_of_the_right_sizes():
    split = heldout_split(300, 50, key=jax.random.key(3))
    heldin, heldout, train, test = (np.asarray(a) for a in split)
    assert heldout.size == 10 and heldin.size == 40
    assert test.size == 60 and train.size == 240
    np.testing.assert_array_equal(np.sort(np.concatenate([heldin, heldout])), np.arange(50))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(300))
    for indices in (heldin, heldout, train, test):
        assert np.all(np.diff(indices) > 0)
    again = heldout_split(300, 50, key=jax.random.key(3))
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = heldout_split(300, 50, key=jax.random.key(4))
    assert not np.array_equal(other.heldout_neurons, split.heldout_neurons)
    custom = heldout_split(10, 7, key=jax.random.key(0), neuron_fraction=0.5, trial_fraction=0.3)
    assert custom.heldout_neurons.size == 4 and custom.test_trials.size == 3


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((300, 50), {"neuron_fraction": 0.0}, "neuron_fraction"),
        ((300, 50), {"trial_fraction": 1.0}, "trial_fraction"),
        ((300, 2), {"neuron_fraction": 0.2}, "neuron_fraction"),
        ((4, 50), {"trial_fraction": 0.1}, "trial_fraction"),
        ((1, 50), {}, "num_trials"),
        ((300, 50.0), {}, "num_neurons"),
    ],
)
def test_heldout_split_rejects_bad_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        heldout_split(*args, key=jax.random.key(0), **kwargs)

"""Metrics against scipy and closed forms."""

import jax
import numpy as np
import pytest
import scipy.signal
import scipy.special
import scipy.stats
import sklearn.linear_model
import sklearn.metrics

from jaxdyn.baselines import gaussian_smooth, gaussian_window, smoothing_glm_baseline
from jaxdyn.data import heldout_split, lorenz_spikes
from jaxdyn.metrics.regression import linear_r2, r2_score
from jaxdyn.metrics.spikes import bits_per_spike, co_bps

# ---- Bits per spike (Neural Latents Benchmark) ----


def _nlb_bits_per_spike(rates, spikes):
    """`nlb_tools.evaluation.bits_per_spike` transcribed in NumPy (with its log k! term and
    its 1e-9 for zero rates): the second method the JAX version is checked against."""

    def nll(rates, spikes):
        rates, spikes = rates.copy(), spikes.copy()
        observed = ~np.isnan(spikes)
        rates, spikes = rates[observed], spikes[observed]
        assert not np.any(np.isnan(rates)) and np.all(rates >= 0)
        rates[rates == 0] = 1e-9
        return np.sum(rates - spikes * np.log(rates) + scipy.special.gammaln(spikes + 1.0))

    axes = tuple(range(spikes.ndim - 1))
    null = np.tile(np.nanmean(spikes, axis=axes, keepdims=True), spikes.shape[:-1] + (1,))
    return (nll(null, spikes) - nll(rates, spikes)) / np.nansum(spikes) / np.log(2)


def test_bits_per_spike_by_hand():
    # One trial, two bins, two neurons. Neuron 0: counts (0, 2), null rate 1, predicted
    # (0.5, 2). Neuron 1: counts (1, 1), null 1, predicted (1, 1): no difference.
    #   NLL_null(0)  = (1 - 0·log 1) + (1 - 2·log 1)          = 2
    #   NLL_model(0) = (0.5 - 0·log 0.5) + (2 - 2·log 2)      = 2.5 - 2 ln 2
    #   (log k! is the same in both and cancels.)
    #   bps = (2 - 2.5 + 2 ln 2) / (4 spikes · ln 2) = 1/2 - 1/(8 ln 2) ≈ 0.319663
    spikes = np.array([[[0.0, 1.0], [2.0, 1.0]]])
    rates = np.array([[[0.5, 1.0], [2.0, 1.0]]])
    expected = 0.5 - 1 / (8 * np.log(2))
    assert float(bits_per_spike(rates, spikes)) == pytest.approx(expected, rel=1e-12)
    assert float(co_bps(rates, spikes)) == pytest.approx(expected, rel=1e-12)
    # A zero rate where no spike fell is replaced by 1e-9 (NLB): NLL_model(0) = 1e-9 + 2 -
    # 2 ln 2, so bps = (2 ln 2 - 1e-9) / (4 ln 2).
    rates[0, 0, 0] = 0.0
    expected = (2 * np.log(2) - 1e-9) / (4 * np.log(2))
    assert float(bits_per_spike(rates, spikes)) == pytest.approx(expected, rel=1e-12)


def test_bits_per_spike_matches_nlb_tools():
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 0.1, size=(7, 20, 5))
    spikes = rng.poisson(rates).astype(float)
    rates[0, 0, 0] = 0.0  # a zero rate prediction
    spikes[:, :, 4] = 0.0  # a silent neuron (null rate 0 → 1e-9)
    spikes[1, 2, 3] = np.nan  # an unobserved bin
    rates[1, 2, 3] = np.nan  # ignored there, as NLB does
    model = rng.gamma(2.0, 0.1, size=rates.shape)
    for prediction in (rates, model):
        # Same sums, reordered (NLB sums each NLL, we sum their difference): float64 rounding.
        assert float(bits_per_spike(prediction, spikes)) == pytest.approx(
            _nlb_bits_per_spike(prediction, spikes), rel=1e-10
        )


def test_bits_per_spike_null_perfect_and_saturated_models():
    rng = np.random.default_rng(1)
    true = rng.gamma(1.0, 0.2, size=(50, 40, 6))
    spikes = rng.poisson(true).astype(float)
    null = np.broadcast_to(spikes.mean(axis=(0, 1)), spikes.shape)
    assert float(bits_per_spike(null, spikes)) == pytest.approx(0.0, abs=1e-12)
    # The true rates carry information beyond the means; the saturated model (rates = counts)
    # is the upper bound of every prediction.
    perfect = float(bits_per_spike(true, spikes))
    saturated = float(bits_per_spike(spikes, spikes))
    assert 0 < perfect < saturated
    k = spikes[spikes > 0]
    nll_null = np.sum(null - spikes * np.log(null))
    nll_saturated = np.sum(k - k * np.log(k)) + 1e-9 * np.sum(spikes == 0)
    assert saturated == pytest.approx(
        (nll_null - nll_saturated) / (spikes.sum() * np.log(2)), rel=1e-10
    )
    # Constant true rates: the per-neuron mean is (nearly) the true model.
    constant = np.full_like(true, 0.1)
    counts = rng.poisson(constant).astype(float)
    assert abs(float(bits_per_spike(constant, counts))) < 0.01


def test_bits_per_spike_handles_nans_as_nlb():
    rng = np.random.default_rng(2)
    rates = rng.gamma(2.0, 0.1, size=(5, 10, 3))
    spikes = rng.poisson(rates).astype(float)
    masked = spikes.copy()
    masked[0] = np.nan  # an unobserved trial is left out of likelihoods, means and totals
    assert float(bits_per_spike(rates, masked)) == pytest.approx(
        float(bits_per_spike(rates[1:], spikes[1:])), rel=1e-12
    )
    # 50 bins of neuron 1 are NaN; the 10 of them in the unobserved trial are not counted.
    with pytest.raises(ValueError, match="40 of 120 rate predictions .* NaN, infinite or negative"):
        bits_per_spike(np.where(np.arange(3) == 1, np.nan, rates), masked)
    with pytest.raises(ValueError, match="150 of 150 .* NaN, infinite or negative"):
        bits_per_spike(-rates, spikes)
    infinite = rates.copy()
    infinite[2, 3, 0] = np.inf  # e.g. a failed solve: it would score minus infinity
    with pytest.raises(ValueError, match="1 of 150 .* NaN, infinite or negative"):
        bits_per_spike(infinite, spikes)
    with pytest.raises(ValueError, match="shape"):
        bits_per_spike(rates[:, :5], spikes)
    # Under jit there is no exception to raise: a NaN result says the same.
    assert np.isnan(jax.jit(bits_per_spike)(-rates, spikes))
    assert float(jax.jit(bits_per_spike)(rates, spikes)) == pytest.approx(
        float(bits_per_spike(rates, spikes)), rel=1e-12
    )


# ---- R² ----


def test_r2_score_matches_sklearn():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(6, 25, 4)) * np.array([1.0, 2.0, 0.5, 3.0])
    pred = target + rng.normal(size=target.shape)
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (NLB's flatten3d)
    # Same sums in a different order: float64 rounding.
    assert float(r2_score(pred, target)) == pytest.approx(
        sklearn.metrics.r2_score(flat(target), flat(pred)), rel=1e-12
    )
    assert float(r2_score(pred[..., 0].ravel(), target[..., 0].ravel())) == pytest.approx(
        sklearn.metrics.r2_score(target[..., 0].ravel(), pred[..., 0].ravel()), rel=1e-12
    )
    # Constant targets (scikit-learn's force_finite): exact → 1, otherwise → 0.
    constant = np.ones((10, 2))
    bad = constant + np.array([0.0, 1.0]) * rng.normal(size=(10, 2))
    assert float(r2_score(bad, constant)) == sklearn.metrics.r2_score(constant, bad) == 0.5
    with pytest.raises(ValueError, match="shape"):
        r2_score(pred, target[:3])


def test_linear_r2_recovers_an_affine_relation():
    rng = np.random.default_rng(4)
    latents = rng.normal(size=(10, 30, 5))
    state = latents @ rng.normal(size=(5, 3)) + np.array([1.0, -2.0, 25.0])
    # Exactly affine: R² = 1 up to float64 least-squares rounding.
    assert float(linear_r2(latents, state)) == pytest.approx(1.0, abs=1e-10)
    assert float(linear_r2(latents, state, fit_on=np.arange(6))) == pytest.approx(1.0, abs=1e-10)
    # With noise: the same as scikit-learn's LinearRegression fitted on trials 0-5 and scored
    # on trials 6-9.
    noisy = state + rng.normal(size=state.shape)
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    fit = sklearn.linear_model.LinearRegression().fit(flat(latents[:6]), flat(noisy[:6]))
    expected = sklearn.metrics.r2_score(flat(noisy[6:]), fit.predict(flat(latents[6:])))
    assert float(linear_r2(latents, noisy, fit_on=np.arange(6))) == pytest.approx(
        expected, rel=1e-9
    )
    for fit_on in (np.arange(10), np.array([0, 0]), np.array([10]), np.array([0.5])):
        with pytest.raises(ValueError, match="fit_on"):
            linear_r2(latents, state, fit_on=fit_on)


# ---- The smoothing + Poisson GLM baseline ----


def test_smoothing_matches_nlb_window_and_numpy_convolution():
    for sd in (3.0, 4.0, 5.0):
        window = scipy.signal.windows.gaussian(int(6 * sd), sd, sym=True)
        np.testing.assert_allclose(gaussian_window(sd), window / window.sum(), rtol=1e-12)
    spikes = np.random.default_rng(5).poisson(0.3, size=(2, 40, 3)).astype(float)
    window = np.asarray(gaussian_window(3.0))
    expected = np.apply_along_axis(lambda x: np.convolve(x, window, "same"), 1, spikes)
    np.testing.assert_allclose(gaussian_smooth(spikes, 3.0), expected, atol=1e-14)


def test_glm_baseline_recovers_a_known_glm():
    # Held-in neurons follow a smooth two-dimensional latent; held-out counts are drawn
    # from a Poisson GLM of exactly the baseline's form, log λ = c + w · log(smooth + 1e-4).
    rng = np.random.default_rng(6)
    trials, bins, heldin, heldout = 60, 100, 20, 5
    t = np.arange(bins) / bins
    phase = rng.uniform(0, 2 * np.pi, size=(trials, 1, 1))
    latent = np.concatenate(
        [
            np.sin(2 * np.pi * t[:, None] + phase),
            np.cos(np.pi * t)[None, :, None].repeat(trials, 0),
        ],
        axis=-1,
    )
    log_rates = np.log(0.2) + latent @ rng.normal(scale=0.8, size=(2, heldin))
    spikes_in = rng.poisson(np.exp(log_rates)).astype(float)
    features = np.log(np.asarray(gaussian_smooth(spikes_in, 4.0)) + 1e-4)
    weights = rng.normal(scale=0.05, size=(heldin, heldout))
    true_out = np.exp(np.log(0.15) + features @ weights - features.mean((0, 1)) @ weights)
    spikes_out = rng.poisson(true_out).astype(float)
    train, test = slice(0, 48), slice(48, 60)
    out = smoothing_glm_baseline(
        spikes_in[train], spikes_out[train], spikes_in[test], kernel_sd_bins=4.0, alpha=1e-4
    )
    assert out.heldout_rates.shape == (12, bins, heldout)
    assert out.heldin_rates.shape == (12, bins, heldin)
    fitted = float(co_bps(out.heldout_rates, spikes_out[test]))
    oracle = float(co_bps(true_out[test], spikes_out[test]))
    # It beats the null model and comes close to the true GLM: 21 coefficients estimated
    # from 4,800 bins of ~0.15 counts; measured 0.159 against 0.180 bits/spike, rate R² 0.80.
    assert fitted > 0.7 * oracle > 0
    assert float(r2_score(out.heldout_rates, true_out[test])) > 0.7


def test_glm_baseline_predicts_lorenz_heldout_neurons():
    data = lorenz_spikes(key=jax.random.key(0), num_trials=100)
    split = heldout_split(100, 50, key=jax.random.key(1))
    spikes = np.asarray(data.spikes)
    train = spikes[np.asarray(split.train_trials)]
    test = spikes[np.asarray(split.test_trials)]
    heldin, heldout = np.asarray(split.heldin_neurons), np.asarray(split.heldout_neurons)
    rates = np.asarray(data.rates)[np.asarray(split.test_trials)]
    out = smoothing_glm_baseline(
        train[..., heldin], train[..., heldout], test[..., heldin], heldin="glm"
    )
    # Measured on this data (80 train trials): co-bps 0.11 (true rates: 0.18), held-out rate
    # R² 0.57.
    assert float(co_bps(out.heldout_rates, test[..., heldout])) > 0.05
    assert float(r2_score(out.heldout_rates, rates[..., heldout])) > 0.3
    # NLB's held-in prediction is the smoothed counts themselves: at ~0.1 counts per bin
    # they are far noisier than the rates vary (R² -3.8 here); the held-in GLMs denoise
    # them (R² -0.2 here, 0.1 with 300 trials).
    smoothed = gaussian_smooth(test[..., heldin], 4.0)
    assert float(r2_score(out.heldin_rates, rates[..., heldin])) > 1.0 + float(
        r2_score(smoothed, rates[..., heldin])
    )
    with pytest.raises(ValueError, match="spikes_heldin_test"):
        smoothing_glm_baseline(train[..., heldin], train[..., heldout], test[..., :3])
    with pytest.raises(ValueError, match="heldin"):
        smoothing_glm_baseline(
            train[..., heldin], train[..., heldout], test[..., heldin], heldin="x"
        )


# ---- Improved precision and recall (Kynkäänniemi et al. 2019) ----


def test_precision_recall_by_hand_on_a_line():
    from jaxdyn.metrics import precision_recall

    # Real points 0, 1, 2, 3 on a line, k = 1: every ball has radius 1, so the real manifold
    # is [-1, 4]. Generated 0.5, 3.9, 10 and 11: the first two are inside (precision 2/4).
    # The generated balls (k = 1): 0.5 and 3.9 reach each other (radius 3.4), 10 and 11 have
    # radius 1; real points within 3.4 of 0.5 or 3.9: all four (recall 1).
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    generated = np.array([[0.5], [3.9], [10.0], [11.0]])
    assert precision_recall(real, generated, k=1) == (0.5, 1.0)
    # the same shrunk by 1e-6 and moved by 1e4: distances are taken from the differences (the
    # expansion ‖a‖² − 2a·b + ‖b‖² rounds at ~1e-8 here and called every point precise)
    assert precision_recall(1e4 + 1e-6 * real, 1e4 + 1e-6 * generated, k=1) == (0.5, 1.0)
    # k = 2 for the generated set: 0.5's second neighbour is 10 (radius 9.5): recall still 1;
    # k = 4 needs five points in a set of four: refused
    assert precision_recall(real, generated, k=2)[1] == 1.0
    with pytest.raises(ValueError, match="n > k=4"):
        precision_recall(real, generated, k=4)


def test_precision_recall_of_a_set_with_itself_and_of_a_collapsed_generator():
    from jaxdyn.metrics import precision_recall

    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 5))
    # the same points: each lies at the centre of its own ball
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    # a generator that repeats 4 real points (with a tiny jitter): all precise, and it covers
    # those 4 points only
    collapsed = real[np.repeat(np.arange(4), 25)] + 1e-9 * rng.normal(size=(100, 5))
    assert precision_recall(real, collapsed, k=3) == (1.0, 4 / 200)
    with pytest.raises(ValueError, match="same dim"):
        precision_recall(real, real[:, :4])

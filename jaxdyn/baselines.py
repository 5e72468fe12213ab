"""Baselines that are not differential-equation models, for the experiments to compare against.

The spike-smoothing baseline of the Neural Latents Benchmark: Gaussian-smoothed held-in spikes,
and a Poisson GLM from their logarithm to each held-out neuron (Pei et al. 2021;
`nlb_tools/examples/baselines/smoothing/run_smoothing.py`). The GLMs are scikit-learn's,
imported (with threadpoolctl) when a baseline is fitted, so that importing jaxdyn does not
pay for them.
"""

import functools
import warnings
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["SmoothingGLMRates", "gaussian_smooth", "gaussian_window", "smoothing_glm_baseline"]


class SmoothingGLMRates(NamedTuple):
    """Rates (expected counts per bin) the smoothing baseline predicts for the test trials.

    - `heldin_rates`: the smoothed held-in spikes (or their GLM fit, see `heldin`),
      `(test trials, bins, heldin)`.
    - `heldout_rates`: the GLM's held-out rates, `(test trials, bins, heldout)`.
    """

    heldin_rates: Float[Array, "trials bins heldin"]
    heldout_rates: Float[Array, "trials bins heldout"]


def gaussian_window(kernel_sd_bins: float) -> Float[Array, " window"]:
    """NLB's smoothing kernel: `scipy.signal.windows.gaussian(M, σ, sym=True)` with
    `M = int(6σ)` points, `w_m = exp(-½ ((m - (M - 1)/2) / σ)²)`, normalised to sum 1, so
    smoothed counts stay counts per bin."""
    if not kernel_sd_bins > 0 or int(6 * kernel_sd_bins) < 1:
        raise ValueError(f"gaussian_window needs kernel_sd_bins > 0, got {kernel_sd_bins!r}")
    length = int(6 * kernel_sd_bins)
    m = jnp.arange(length, dtype=jnp.result_type(float)) - (length - 1) / 2
    window = jnp.exp(-0.5 * (m / kernel_sd_bins) ** 2)
    return window / jnp.sum(window)


@functools.partial(jax.jit, static_argnames="kernel_sd_bins")
def _smooth(spikes, kernel_sd_bins):
    window = gaussian_window(kernel_sd_bins)
    along_time = jax.vmap(lambda x: jnp.convolve(x, window, mode="same"), in_axes=1, out_axes=1)
    return jax.vmap(along_time)(spikes)


def gaussian_smooth(
    spikes: Float[ArrayLike, "trials bins neurons"], kernel_sd_bins: float
) -> Float[Array, "trials bins neurons"]:
    """Each neuron's counts of each trial convolved with `gaussian_window(kernel_sd_bins)`
    along the bins, as `np.convolve(x, window, "same")`: a symmetric (non-causal) kernel,
    zero beyond the trial's ends (so rates dip within ~2σ of either end, as in NLB)."""
    spikes = jnp.asarray(spikes)
    if spikes.ndim != 3:
        raise ValueError(
            f"gaussian_smooth needs spikes of shape (trials, bins, neurons), got {spikes.shape}"
        )
    if not kernel_sd_bins > 0:
        raise ValueError(f"gaussian_smooth needs kernel_sd_bins > 0, got {kernel_sd_bins!r}")
    if int(6 * kernel_sd_bins) > spikes.shape[1]:
        raise ValueError(
            f"gaussian_smooth: the window of kernel_sd_bins={kernel_sd_bins!r} "
            f"({int(6 * kernel_sd_bins)} bins) is longer than a trial ({spikes.shape[1]} bins)"
        )
    return _smooth(spikes.astype(jnp.result_type(spikes.dtype, float)), float(kernel_sd_bins))


def _fit_poisson(inputs, counts, alpha, max_iter, solver):
    """NLB's `fit_poisson`: one `PoissonRegressor` per output, refitted with 5× the
    iterations while it stops at its limit (up to 10,000)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import PoissonRegressor
    from threadpoolctl import threadpool_limits

    models = []
    for neuron in range(counts.shape[1]):
        limit = max_iter
        while True:
            glm = PoissonRegressor(alpha=alpha, max_iter=limit, solver=solver)
            with warnings.catch_warnings(), threadpool_limits(limits=1):
                warnings.simplefilter("ignore", ConvergenceWarning)
                glm.fit(inputs, counts[:, neuron])
            if glm.n_iter_ < limit or limit >= 10_000:
                break
            limit *= 5
        if glm.n_iter_ >= limit:
            warnings.warn(
                f"smoothing_glm_baseline: the Poisson GLM of held-out neuron {neuron} did not "
                f"converge in {limit} {solver} iterations",
                ConvergenceWarning,
                stacklevel=3,
            )
        models.append(glm)
    return models


def smoothing_glm_baseline(
    spikes_heldin_train: Float[ArrayLike, "train bins heldin"],
    spikes_heldout_train: Float[ArrayLike, "train bins heldout"],
    spikes_heldin_test: Float[ArrayLike, "test bins heldin"],
    *,
    kernel_sd_bins: float = 4.0,
    alpha: float = 0.3,
    log_offset: float = 1e-4,
    max_iter: int = 500,
    solver: str = "lbfgs",
    heldin: Literal["smoothed", "glm"] = "smoothed",
) -> SmoothingGLMRates:
    """NLB's spike-smoothing baseline for co-smoothing.

    1. Smooth the held-in counts with `gaussian_smooth(·, kernel_sd_bins)`: `s(t)`.
    2. Fit, for each held-out neuron `n`, a Poisson GLM with log link on the train trials
       (every bin a sample),

           k_n(t) ~ Poisson(exp(w_n · log(s(t) + ε) + c_n)),    ε = `log_offset`,

       by scikit-learn's `PoissonRegressor` as NLB does: the minimiser of the mean Poisson
       deviance plus `alpha/2 ‖w_n‖²` (intercept unpenalised).
    3. Predict the held-out rates of the test trials, clipped to `[1e-9, 1e20]` as NLB does.

    scikit-learn rather than a JAX solver because this is NLB's baseline to the letter (the
    same solver, penalty scaling and convergence retries); the fit is small (one 2-D design
    per neuron) and runs on the host in float64. `solver` is scikit-learn's: `"lbfgs"` (its
    default, which NLB ran) or e.g. `"newton-cholesky"`, which minimises the same convex
    objective more exactly (on `lorenz_spikes` the two agreed to 3e-6 in co-bps and 3% in the
    worst predicted rate). BLAS runs on one thread during the fits: on 2 busy cores the
    default two OpenBLAS threads made each fit 10-50× slower (1.0 s against 0.02 s).

    Defaults: NLB chose 30-60 ms kernels and `alpha` in 0.001-0.1 by cross-validation on
    its 5-ms data; for `lorenz_spikes` (10-ms bins) 4 bins (40 ms) and `alpha = 0.3` were
    best on a grid of σ in {3, 4, 5, 6, 8} bins and `alpha` from 0.001 to 1, scored on 60
    validation trials taken from the training trials of one data set (co-bps 0.184; σ 3-5
    with `alpha` 0.01-0.3 all came within 0.005 of it).

    Held-in rates: `heldin="smoothed"` returns the smoothed held-in counts, NLB's default
    held-in prediction (noisy: the kernel averages only ~2√π σ bins). `heldin="glm"` is NLB's
    optional variant: each held-in neuron gets a GLM of the same form (its own smoothed
    counts among the inputs), fitted on the train and test trials' held-in counts together
    (those are given to the model) — a denoised held-in rate.

    **Returns:** `SmoothingGLMRates` for the test trials, expected counts per bin.
    """
    heldin_train = jnp.asarray(spikes_heldin_train)
    heldout_train = jnp.asarray(spikes_heldout_train)
    heldin_test = jnp.asarray(spikes_heldin_test)
    for name, array in (
        ("spikes_heldin_train", heldin_train),
        ("spikes_heldout_train", heldout_train),
        ("spikes_heldin_test", heldin_test),
    ):
        if array.ndim != 3:
            raise ValueError(
                f"smoothing_glm_baseline needs {name} of shape (trials, bins, neurons), "
                f"got {array.shape}"
            )
    if heldout_train.shape[:2] != heldin_train.shape[:2]:
        raise ValueError(
            "smoothing_glm_baseline needs spikes_heldout_train with the trials and bins of "
            f"spikes_heldin_train, got {heldout_train.shape} and {heldin_train.shape}"
        )
    if heldin_test.shape[1:] != heldin_train.shape[1:]:
        raise ValueError(
            "smoothing_glm_baseline needs spikes_heldin_test with the bins and neurons of "
            f"spikes_heldin_train, got {heldin_test.shape} and {heldin_train.shape}"
        )
    if heldin not in ("smoothed", "glm"):
        raise ValueError(
            f"smoothing_glm_baseline: unknown heldin={heldin!r}; expected 'smoothed' or 'glm'"
        )
    if alpha < 0:
        raise ValueError(f"smoothing_glm_baseline needs alpha >= 0, got alpha={alpha!r}")
    if not log_offset > 0:
        raise ValueError(f"smoothing_glm_baseline needs log_offset > 0, got {log_offset!r}")
    smooth_train = gaussian_smooth(heldin_train, kernel_sd_bins)
    smooth_test = gaussian_smooth(heldin_test, kernel_sd_bins)
    num_heldin = heldin_train.shape[2]
    inputs_train = np.log(np.asarray(smooth_train, np.float64).reshape(-1, num_heldin) + log_offset)
    inputs_test = np.log(np.asarray(smooth_test, np.float64).reshape(-1, num_heldin) + log_offset)
    counts = np.asarray(heldout_train, np.float64).reshape(-1, heldout_train.shape[2])
    models = _fit_poisson(inputs_train, counts, alpha, max_iter, solver)
    heldout = np.stack([glm.predict(inputs_test) for glm in models], axis=-1)
    heldout = np.clip(heldout, 1e-9, 1e20).reshape(*heldin_test.shape[:2], -1)
    heldin_rates = smooth_test
    if heldin == "glm":
        heldin_counts = np.concatenate(
            [
                np.asarray(heldin_train, np.float64).reshape(-1, num_heldin),
                np.asarray(heldin_test, np.float64).reshape(-1, num_heldin),
            ]
        )
        both = np.concatenate([inputs_train, inputs_test])
        heldin_models = _fit_poisson(both, heldin_counts, alpha, max_iter, solver)
        fitted = np.stack([glm.predict(inputs_test) for glm in heldin_models], axis=-1)
        fitted = np.clip(fitted, 1e-9, 1e20).reshape(heldin_test.shape)
        heldin_rates = jnp.asarray(fitted, smooth_test.dtype)
    return SmoothingGLMRates(
        heldin_rates=heldin_rates, heldout_rates=jnp.asarray(heldout, smooth_test.dtype)
    )

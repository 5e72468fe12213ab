"""Class-conditional flow matching on scikit-learn's 8×8 digits (issue 7 §4.2, issue 14 §3):
samples, test bits/dim against an independent-pixel model scored alike, a classifier score, and
the samples' precision, recall and label diversity.

Data. `load_digits` (1,797 images of 8 × 8 = `D` = 64 pixels, integer levels `k ∈ {0, …, 16}`;
Alpaydin & Kaynak 1998), split per class by `jaxdyn.data.digits` with the run's seed into train,
validation (`data.validation_fraction`, carved from the former training images) and test
(`data.test_fraction`). Every choice below (the smoothing of the marginals, the copula's ridge,
the transform, the training length) is made on validation; test is scored once.

Likelihoods, scored alike. Both models are scored by the negative log-likelihood of the
*discrete* test image `k` on the 17-level grid, in bits per dimension relative to bins of unit
width (`−log₂ P(k) / D`; `log₂ 17 ≈ 4.09` is the uniform model):

- Independent pixels: `P(k) = Π_i p_i(k_i)` with `p_i(j) = (n_ij + α)/(n + 17α)` (Laplace-smoothed
  counts of the training images), `α` chosen from `data.smoothing_grid` on validation bits/dim.
  Its dequantised density `Π_i p_i(⌊x_i⌋)` on `x ∈ [0, 17)^D` is constant on each unit bin, so
  its dequantised bound equals its discrete likelihood exactly.
- The flow: a continuous density `p_X` on `x = k + u ∈ [0, 17)^D` bounds the discrete one through
  any dequantisation distribution `q(u)` (Theis et al. 2016; Ho et al. 2019): with `K`
  independent draws `u_j ~ q`,

      log P(k) ≥ E log (1/K) Σ_j p_X(k + u_j) / q(u_j)   (importance-weighted, Burda et al. 2016),

  a lower bound that tightens as `K` grows (`K = 1`: Jensen's bound `E_q log p_X − E_q log q`).
  Here `q` is uniform on `[ε, 1 − ε)^D`, `ε = 1e-6` (so `log q = −D log(1 − 2ε)`, kept in the
  numbers; it keeps the transform below finite), the same `q` as in training. The headline
  `bits_per_dim` is the bound with all `evaluation.dequantization_draws = K` draws (an upper
  bound on the flow's discrete bits/dim in expectation over the draws; one set of draws gives
  an estimate of it), reported with the `K = 1, 2, 4, …` values of the same
  draws, Jensen's bound, and the paired per-image difference from independent pixels.

Model space. The flow models `y = T(x)`, an elementwise bijection, and `log p_X(x) = log p_Y(y) +
Σ_i log |dT_i/dx_i|` (Jacobian in level units, i.e. per unit-width bin):

- `data.transform = gaussianize` (marginal Gaussianisation: Chen & Gopinath 2000): `T_i(x) =
  Φ⁻¹(F_i(x))`, `F_i` the CDF of the independent-pixel model's dequantised marginal (piecewise
  linear, the validated `α`), so `dT_i/dx_i = p_i(⌊x_i⌋)/φ(T_i(x))`. Under independent pixels
  `y ~ N(0, I)` exactly: the flow's base; a flow with zero velocity *is* the independent-pixel
  model, and the learned transport only has to add the dependence between pixels.
- `data.transform = affine` (issue 7's setting): `y = s (x − 17/2)`, `s = 2 · data.half_width /
  17`, so `y ∈ [−half_width, half_width)^D` and `log |dT/dx| = D log s`.

A Gaussian copula (`y ~ N(μ, Σ + λI)` in the Gaussianised space, fitted to one dequantised draw of
each training image, `λ` from `data.copula_ridge_grid` on validation) is scored with the same
draws: what linear dependence alone gives.

Model. A class-conditional velocity `b(t, y, c) = MLP([y, φ(t), onehot(c)])` (`build_model`, a
`jaxdyn.models.MLPField` with the one-hot as its `args`) with time features
`φ(t) = (t, sin πjt, cos πjt)_{j=1..J}` and 11 label slots (the ten digits and a null label),
trained by conditional flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023) from
`y0 ~ N(0, I)` to data `y1 = T(k + u)`, `u ~ q` drawn afresh at every step:
`E|b(t, (1 − t) y0 + t y1, c) − (y1 − y0)|²`, `t ~ U[0, 1]` (`jaxdyn.generative.
flow_matching_loss`). The label enters that loss as extra coordinates of the state that both
endpoints share (`[y, onehot(c)]`), so the interpolant keeps them fixed and the augmented field
returns zero velocity for them: the loss is exactly the conditional one. With probability
`model.label_dropout` the label is replaced by the null label during training (classifier-free
guidance training, Ho & Salimans 2022), so the same network is also an *unconditional* velocity
`b(t, y, ∅)`: the likelihoods are of that unconditional model unless labelled class-conditional.
Sampling transports `N(0, I)` by `dy/dt = b` from `t = 0` to 1 with dopri5
(`jaxdyn.generative.sample_ode`, one step sequence for each chunk of `sampling.chunk` samples of a
label: the NFE reported is per such joint solve); with `sampling.guidance = w ≠ 1` the field is
`b(·, ∅) + w (b(·, c) − b(·, ∅))`. A generated `y` is mapped back to its level `k = ⌊T⁻¹(y)⌋`
(clipped to 0..16) and to digits' pixel scale `k/16`.

The log-likelihood is the instantaneous change of variables (`jaxdyn.generative.log_likelihood`:
Chen et al. 2018, FFJORD of Grathwohl et al. 2019) with the exact divergence (the trace of the
64 × 64 Jacobian, 64 JVPs per evaluation); Hutchinson's one-probe estimate (Rademacher) is run
on the first `evaluation.hutchinson_images` (image, draw) points for comparison: its mean, its
spread around the exact value, and the cost of each. Flow matching does not maximise the
likelihood; the validation bits/dim of the flow is reported beside the test one.

Sample quality and diversity. A multinomial logistic regression (scikit-learn) is trained on the
real training digits (pixel scale `k/16`); its accuracy on the real test digits is reported next
to its accuracy on `evaluation.samples_per_class` class-conditional samples of each digit,
scored against the label they were generated with, and the mean probability it gives the
conditioning label (the real test digits' mean probability of their own label beside it). The
squared 2-Wasserstein distance by exact optimal transport (`jaxdyn.metrics.
wasserstein2_squared`) between the test digits and as many generated digits (class-conditional
with the test set's label counts, and unconditional) is compared with the same distance between
the test digits and as many real training digits (`evaluation.floor_repeats` random subsets: the
floor). Diversity: the improved precision and recall (`jaxdyn.metrics.precision_recall`,
Kynkäänniemi et al. 2019, `k = evaluation.neighbours` nearest neighbours, pixel space) of the
same generated sets against the test digits, with the same figures for the real training subsets
(the reference: what real digits of that number score); the entropy (bits) of the classifier's
predicted labels on the unconditional samples, against that on the test digits (`log₂ 10 ≈ 3.32`
at most). The median distance from each generated digit to its nearest training digit, over the
same for the test digits, says whether samples are further from the data than new real digits
are (> 1) or copies of training digits (≪ 1).

Targets (`target`): classifier accuracy on the conditional samples, the conditional W2² within
`w2_ratio` × the floor, and test bits/dim below the independent-pixel model's.
"""

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from omegaconf import DictConfig

from ..config import (
    ConfigError,
    TrainConfig,
    at_least,
    choice,
    fraction,
    positive,
    positive_list,
    section,
)
from ..data import digits
from ..generative import flow_matching_loss, log_likelihood, sample_ode, standard_normal
from ..metrics import precision_recall, wasserstein2_squared
from ..models import ACTIVATIONS, MLPField
from ..plotting import Figure, loss_curve
from ..train import read_metrics
from ._records import mean_se
from ._registry import register
from ._training import fit_from_config

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # the unconditional slot of the label one-hot
LEVELS = 17  # load_digits' intensities 0..16
DIM = 64
EPSILON = 1e-6  # the dequantisation u is uniform on [EPSILON, 1 - EPSILON)
TRANSFORMS = ("gaussianize", "affine")


# --- config -----------------------------------------------------------------------------------


@dataclasses.dataclass
class DigitsDataConfig:
    test_fraction: float = fraction(0.2)
    validation_fraction: float = fraction(0.15)  # per class, carved from the training images
    transform: str = choice("gaussianize", TRANSFORMS)
    half_width: float = positive(1.0)  # affine: data scaled to [-half_width, half_width)
    smoothing_grid: list[float] = positive_list([0.01, 0.03, 0.1, 0.3, 1.0], "smoothings")
    copula_ridge_grid: list[float] = positive_list([1e-3, 1e-2, 1e-1], "ridges")


@dataclasses.dataclass
class VelocityModelConfig:
    width: int = at_least(256, 1)
    depth: int = at_least(3, 1)
    activation: str = choice("silu", tuple(ACTIVATIONS))
    time_frequencies: int = at_least(8, 0)  # J in φ(t) = (t, sin πjt, cos πjt)
    label_dropout: float = fraction(0.2, allow_zero=True)  # classifier-free guidance training


@dataclasses.dataclass
class DigitsSamplingConfig:
    rtol: float = positive(1e-5)
    atol: float = positive(1e-5)
    guidance: float = at_least(1.0, 0.0)  # 1: the conditional field alone
    chunk: int = at_least(100, 1)  # samples per compiled call


@dataclasses.dataclass
class DigitsEvaluationConfig:
    samples_per_class: int = at_least(100, 1)
    grid_samples: int = at_least(10, 1)  # columns of the samples figure
    nll_images: int | None = at_least(None, 1)  # null: the whole test split
    validation_images: int | None = at_least(None, 1)  # null: the whole validation split
    dequantization_draws: int = at_least(8, 1)  # K of the importance-weighted bound
    conditional_nll: bool = True  # also log p(x | true label), labelled as such
    hutchinson_images: int = at_least(64, 0)  # 0: no Hutchinson comparison
    rtol: float = positive(1e-5)
    atol: float = positive(1e-5)
    chunk: int = at_least(60, 1)  # images per compiled likelihood call
    floor_repeats: int = at_least(5, 1)
    neighbours: int = at_least(3, 1)  # k of precision and recall


@dataclasses.dataclass
class DigitsTargetConfig:
    classifier_accuracy: float = 0.9
    w2_ratio: float = positive(1.25)


@dataclasses.dataclass
class DigitsGenerationConfig:
    experiment: str = "digits_generation"
    seed: int = 0
    data: DigitsDataConfig = section(DigitsDataConfig)
    model: VelocityModelConfig = section(VelocityModelConfig)
    sampling: DigitsSamplingConfig = section(DigitsSamplingConfig)
    evaluation: DigitsEvaluationConfig = section(DigitsEvaluationConfig)
    target: DigitsTargetConfig = section(DigitsTargetConfig)
    train: TrainConfig = section(
        TrainConfig, steps=30000, batch_size=256, lr=1e-3, schedule="cosine", chunk=1000
    )


# --- model ------------------------------------------------------------------------------------


def build_model(m: DictConfig, dtype, *, key: PRNGKeyArray) -> MLPField:
    """The velocity `b(t, y, e) = MLP([y, t, sin πjt, cos πjt, e])`, `j = 1..J`, of a `model`
    config section (`VelocityModelConfig`): a `jaxdyn.models.MLPField` whose `args` is a label
    one-hot `e` of length `NUM_CLASSES + 1` (the last slot is the null label), its parameters
    cast to `dtype`."""

    @eqx.filter_jit  # one compilation for the initialisation (eagerly, one per operation)
    def init(key):
        model = MLPField(dim=DIM, width=m.width, depth=m.depth, activation=m.activation,
                         time=True, time_features=m.time_frequencies,
                         conditioning=NUM_CLASSES + 1, key=key)  # fmt: skip
        return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)

    return init(key)


def _onehot(label, dtype) -> Array:
    return jax.nn.one_hot(label, NUM_CLASSES + 1, dtype=dtype)


def _field(model: MLPField, label: Array, guidance: float) -> Callable:
    """The sampling field for one label (`NULL_LABEL`: unconditional); `guidance = w ≠ 1`
    gives `b(·, ∅) + w (b(·, c) − b(·, ∅))`."""

    def velocity(t, y, args):
        conditional = model(t, y, _onehot(label, y.dtype))
        if guidance == 1.0:
            return conditional
        unconditional = model(t, y, _onehot(NULL_LABEL, y.dtype))
        return unconditional + guidance * (conditional - unconditional)

    return velocity


def _augmented(model: MLPField) -> Callable:
    """`[y, e] ↦ [b(t, y, e), 0]`: the label as coordinates the flow leaves fixed."""

    def velocity(t, state, args):
        y, onehot = state[:DIM], state[DIM:]
        return jnp.concatenate([model(t, y, onehot), jnp.zeros_like(onehot)])

    return velocity


def _scale(half_width: float) -> float:
    return 2.0 * half_width / LEVELS


def _marginals(k_train: np.ndarray, alpha: float) -> np.ndarray:
    """`p_i(j) = (n_ij + α) / (n + 17 α)`: each pixel's Laplace-smoothed level frequencies,
    shape `(64, 17)`, float64."""
    counts = np.stack([np.bincount(col, minlength=LEVELS) for col in k_train.astype(int).T])
    return (counts + alpha) / (k_train.shape[0] + LEVELS * alpha)


def _transform(kind: str, p: np.ndarray, half_width: float) -> dict:
    """The elementwise bijection `T` of the module (`kind`: `gaussianize` with the marginals
    `p`, or `affine`) as the constants `_to_model_space` and `_to_levels` use."""
    below = np.concatenate([np.zeros((DIM, 1)), np.cumsum(p, 1)[:, :-1]], 1)  # Σ_{j<k} p_j
    above = np.concatenate([np.cumsum(p[:, ::-1], 1)[:, ::-1][:, 1:], np.zeros((DIM, 1))], 1)
    return {"kind": kind, "scale": _scale(half_width), "log_p": np.log(p), "below": below,
            "above": above}  # fmt: skip


def _to_model_space(levels: Array, u: Array, t: dict) -> tuple[Array, Array]:
    """`y = T(k + u)` for levels `k` and dequantisation `u` of shape `(n, 64)`, and
    `log |det ∂T/∂x|` per image (level units), shape `(n,)`."""
    if t["kind"] == "affine":
        y = t["scale"] * (levels + u - LEVELS / 2)
        return y, jnp.full(y.shape[:-1], DIM * math.log(t["scale"]), y.dtype)
    dtype, pixel = u.dtype, jnp.arange(DIM)
    k = levels.astype(jnp.int32)
    log_p = jnp.asarray(t["log_p"], dtype)[pixel, k]
    p = jnp.exp(log_p)
    lower = jnp.asarray(t["below"], dtype)[pixel, k] + p * u  # F(x)
    upper = jnp.asarray(t["above"], dtype)[pixel, k] + p * (1 - u)  # 1 − F(x), no cancellation
    sign = jnp.where(lower <= upper, 1.0, -1.0).astype(dtype)
    y = sign * jax.scipy.special.ndtri(jnp.minimum(lower, upper))
    log_phi = -0.5 * y**2 - 0.5 * math.log(2 * math.pi)
    return y, jnp.sum(log_p - log_phi, -1)


def _to_levels(y: Array, t: dict) -> np.ndarray:
    """`⌊T⁻¹(y)⌋`, clipped to the levels 0..16."""
    y = np.asarray(y, np.float64)
    if t["kind"] == "affine":
        return np.clip(np.floor(y / t["scale"] + LEVELS / 2), 0, LEVELS - 1)
    import scipy.special

    cdf = scipy.special.ndtr(y)  # bin k: below[k] <= F < below[k + 1]
    return np.clip(np.sum(cdf[..., None] >= t["below"][:, 1:], -1), 0, LEVELS - 1)


def _dequantization(key: PRNGKeyArray, shape, dtype) -> Array:
    return jax.random.uniform(key, shape, dtype, minval=EPSILON, maxval=1 - EPSILON)


# --- evaluation helpers -----------------------------------------------------------------------


def _chunked(
    fn: Callable, model: eqx.Module, arrays: tuple, size: int, cache: dict, balance: bool = True
):
    """`fn(model, *arrays)` over the leading axis in chunks of `size` (`balance`: equal chunks
    of at most `size`), the last padded by repeating a row, compiled once per `(fn, chunk
    shapes)` (kept in `cache`); returns the concatenated outputs and the seconds spent running
    (compilation excluded)."""
    n = arrays[0].shape[0]
    if balance:
        size = -(-n // -(-n // size))  # ⌈n / number of chunks⌉
    pad = (-n) % size
    arrays = tuple(
        np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in map(np.asarray, arrays)
    )
    params, static = eqx.partition(model, eqx.is_array)
    signature = (fn, tuple((a.shape[1:], a.dtype) for a in arrays), size)
    if signature not in cache:
        jitted = jax.jit(lambda p, *a: fn(eqx.combine(p, static), *a))
        cache[signature] = jitted.lower(params, *(a[:size] for a in arrays)).compile()
    compiled = cache[signature]
    outputs, start = [], time.perf_counter()
    for i in range(0, n + pad, size):
        outputs.append(jax.block_until_ready(compiled(params, *(a[i : i + size] for a in arrays))))
    seconds = time.perf_counter() - start
    out = jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outputs)
    return out, seconds


def _bits(log_p_x: np.ndarray) -> np.ndarray:
    """`−log P / (D log 2)`: bits per dimension of natural-log likelihoods."""
    return -np.asarray(log_p_x) / (DIM * math.log(2))


def _independent_pixels(k_train, k_validation, k_test, grid) -> dict:
    """The independent-pixel model: its smoothing `α` chosen on validation bits/dim from
    `grid`, and its exact discrete bits/dim per test image (`per_image`)."""

    def per_image(p, k):
        return _bits(np.sum(np.log(p[np.arange(DIM), k.astype(int)]), 1))

    validation = {float(a): float(per_image(_marginals(k_train, a), k_validation).mean())
                  for a in grid}  # fmt: skip
    alpha = min(validation, key=validation.get)
    p = _marginals(k_train, alpha)
    test = per_image(p, k_test)
    return {"alpha": alpha, "p": p, "validation": validation, "per_image": test}


def _log_mean_exp(log_p: np.ndarray) -> np.ndarray:
    """`log (1/K) Σ_j exp(log_p[:, j])` per row."""
    top = log_p.max(1, keepdims=True)
    return top[:, 0] + np.log(np.mean(np.exp(log_p - top), 1))


def _gaussian_copula(y_train, y_eval: dict, grid) -> dict:
    """`N(μ, Σ + λI)` on Gaussianised points (one dequantised draw per training image), `λ`
    chosen on the validation bound; `y_eval[name] = (y, logdet, draws)` are the scored points
    (`draws` rows per image); returns the importance-weighted bits/dim per image of each."""
    import scipy.stats

    mu, cov = y_train.mean(0), np.cov(y_train.T)

    def bound(ridge, name):
        y, logdet, draws = y_eval[name]
        log_p = scipy.stats.multivariate_normal(mu, cov + ridge * np.eye(DIM)).logpdf(y)
        return _bits(_log_mean_exp((log_p + logdet).reshape(-1, draws)) + _log_q_correction())

    validation = {float(r): float(bound(r, "validation").mean()) for r in grid}
    ridge = min(validation, key=validation.get)
    return {"ridge": ridge, "validation": validation, "per_image": bound(ridge, "test")}


def _log_q_correction() -> float:
    """`−log q(u) = D log(1 − 2ε)` summed over the pixels (per image)."""
    return DIM * math.log(1 - 2 * EPSILON)


def _classifier(x_train: np.ndarray, y_train: np.ndarray):
    """Multinomial logistic regression on pixels in [0, 1] (lbfgs, converged: a warning
    would be an error in the tests)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return LogisticRegression(C=1.0, max_iter=5000, tol=1e-6).fit(x_train, y_train)


def _nearest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    d2 = (
        np.sum(queries**2, 1)[:, None]
        - 2 * queries @ reference.T
        + np.sum(reference**2, 1)[None, :]
    )
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


# --- experiment -------------------------------------------------------------------------------


def _check(cfg: DictConfig) -> None:
    """What the schema cannot say: the grid shows some of the class samples; there are enough
    class samples to match the largest test class, a validation split, and enough training
    digits for the floor."""
    e, d = cfg.evaluation, cfg.data
    if e.grid_samples > e.samples_per_class:
        raise ConfigError(
            f"evaluation.grid_samples={e.grid_samples} must be <= "
            f"evaluation.samples_per_class={e.samples_per_class}"
        )
    try:
        split = digits(test_fraction=d.test_fraction, validation_fraction=d.validation_fraction,
                       seed=cfg.seed)  # fmt: skip
    except ValueError as error:
        raise ConfigError(f"data.test_fraction / data.validation_fraction: {error}") from None
    if "validation" not in split:
        raise ConfigError(f"data.validation_fraction={d.validation_fraction} rounds to no "
                          "validation image")  # fmt: skip
    largest = int(np.bincount(split["test"][1], minlength=NUM_CLASSES).max())
    if largest > e.samples_per_class:
        raise ConfigError(
            f"evaluation.samples_per_class={e.samples_per_class} must be >= the largest test "
            f"class ({largest}) for the conditional W2"
        )
    if split["train"][0].shape[0] < split["test"][0].shape[0]:
        raise ConfigError(
            f"data.test_fraction={d.test_fraction} leaves a training split smaller than "
            "the test split (the W2 floor compares equal-size sets)"
        )


@register("digits_generation", DigitsGenerationConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Class-conditional flow matching on load_digits: samples, bits/dim, classifier score."""
    dtype = jnp.asarray(0.0).dtype  # float64 under x64, else float32
    data = _data(cfg)
    model_key, train_key, eval_key = jax.random.split(jax.random.key(cfg.seed), 3)
    model = build_model(cfg.model, dtype, key=model_key)
    start = time.perf_counter()
    result = _train(cfg, model, data, dtype, train_key, run_dir, resume)
    train_seconds = time.perf_counter() - start
    model = result.model
    noise = _evaluation_noise(cfg, data, dtype, eval_key)
    cache: dict = {}  # compiled evaluation programs
    start = time.perf_counter()
    generated = _generate(cfg, model, data, noise, cache)
    quality = _sample_quality(cfg, data, generated)
    likelihood, hutchinson, figure = _likelihood(cfg, model, data, noise, cache)
    evaluation_seconds = time.perf_counter() - start

    rows = read_metrics(run_dir / "metrics.jsonl")
    if rows:
        loss_curve(np.asarray([r["loss"] for r in rows]), run_dir / "loss.png",
                   title="digits_generation: flow matching loss")  # fmt: skip
    _samples_figure(run_dir, generated["pixels"], generated["labels"], data["x_test"],
                    data["c_test"], cfg.evaluation.grid_samples, cfg.sampling.guidance)  # fmt: skip
    _likelihood_figure(run_dir, *figure)
    t = cfg.target
    accuracy, w2_ratio = quality["classifier"]["generated_accuracy"], quality["w2_ratio"]
    beats = likelihood["flow_minus_independent_pixels"]["mean"] < 0
    return {
        "target": {
            "classifier_accuracy": t.classifier_accuracy,
            "w2_ratio": t.w2_ratio,
            "bits_per_dim": "below the independent-pixel model's",
        },
        "target_met": bool(accuracy >= t.classifier_accuracy and w2_ratio <= t.w2_ratio and beats),
        "classifier": quality["classifier"],
        "w2_squared": quality["w2_squared"],
        "diversity": quality["diversity"],
        "nearest_train_distance": quality["nearest_train_distance"],
        "likelihood": likelihood,
        "hutchinson_vs_exact": hutchinson,
        "sampling": {
            "mean_nfe_conditional": float(np.mean(generated["nfe"])),
            "mean_nfe_unconditional": float(np.mean(generated["nfe_unconditional"])),
            "seconds_per_sample": generated["seconds"] / generated["labels"].size,
            "guidance": cfg.sampling.guidance,
        },
        "data": {
            "train": int(data["x_train"].shape[0]),
            "validation": int(data["k_validation"].shape[0]),
            "test": int(data["x_test"].shape[0]),
            "transform": cfg.data.transform,
        },
        "train_seconds": train_seconds,
        "evaluation_seconds": evaluation_seconds,
        "steps": result.step,
    }


def _data(cfg: DictConfig) -> dict:
    """The split (pixels `k/16`, labels), its integer levels `k`, the independent-pixel model
    (smoothing chosen on validation) and the flow's transform `T`."""
    d = cfg.data
    split = digits(test_fraction=d.test_fraction, validation_fraction=d.validation_fraction,
                   seed=cfg.seed)  # fmt: skip
    (x_train, c_train), (x_test, c_test) = split["train"], split["test"]
    k_train, k_test = np.rint(x_train * (LEVELS - 1)), np.rint(x_test * (LEVELS - 1))
    k_validation = np.rint(split["validation"][0] * (LEVELS - 1))
    independent = _independent_pixels(k_train, k_validation, k_test, d.smoothing_grid)
    return {
        "x_train": x_train,
        "c_train": c_train,
        "x_test": x_test,
        "c_test": c_test,
        "k_train": k_train,  # integer levels 0..16
        "k_validation": k_validation,
        "k_test": k_test,
        "independent": independent,
        "transform": _transform(d.transform, independent["p"], d.half_width),
        "gaussianize": _transform("gaussianize", independent["p"], d.half_width),  # the copula's
    }


def _train(cfg: DictConfig, model: MLPField, data: dict, dtype, key, run_dir: Path, resume):
    """Conditional flow matching on freshly dequantised digits in model space, labels dropped
    to the null label with probability `model.label_dropout` (see the module)."""
    dropout, transform = cfg.model.label_dropout, data["transform"]

    def loss_fn(model: MLPField, batch, key):
        levels, labels = batch
        k_u, k_drop, k_base, k_fm = jax.random.split(key, 4)
        y1, _ = _to_model_space(levels, _dequantization(k_u, levels.shape, dtype), transform)
        dropped = jax.random.bernoulli(k_drop, dropout, labels.shape)
        onehot = _onehot(jnp.where(dropped, NULL_LABEL, labels), dtype)
        y0 = jax.random.normal(k_base, y1.shape, dtype)
        x0, x1 = jnp.concatenate([y0, onehot], 1), jnp.concatenate([y1, onehot], 1)
        return jnp.mean(flow_matching_loss(_augmented(model), x0, x1, key=k_fm))

    batches = (jnp.asarray(data["k_train"], dtype), jnp.asarray(data["c_train"]))
    return fit_from_config(loss_fn, model, batches, cfg.train, key=key, run_dir=run_dir,
                           resume=resume)  # fmt: skip


def _evaluation_noise(cfg: DictConfig, data: dict, dtype, key: PRNGKeyArray) -> dict:
    """Base draws of the conditional and unconditional samples, the dequantisation `u` of the
    likelihood points (test, validation, and one per training image for the copula) and the
    Hutchinson probes' keys, with the sizes they follow from."""
    e = cfg.evaluation
    n_test, n_val = data["x_test"].shape[0], data["k_validation"].shape[0]
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), e.samples_per_class)
    n_nll = n_test if e.nll_images is None else min(e.nll_images, n_test)
    n_val = n_val if e.validation_images is None else min(e.validation_images, n_val)
    draws = e.dequantization_draws
    n_h = min(e.hutchinson_images, n_nll * draws)

    @jax.jit
    def draw(key):
        k_cond, k_uncond, k_u, k_val, k_train, k_probe = jax.random.split(key, 6)
        return (
            jax.random.normal(k_cond, (labels.size, DIM), dtype),
            jax.random.normal(k_uncond, (n_test, DIM), dtype),
            _dequantization(k_u, (n_nll * draws, DIM), dtype),
            _dequantization(k_val, (n_val * draws, DIM), dtype),
            _dequantization(k_train, data["k_train"].shape, dtype),
            jax.random.key_data(jax.random.split(k_probe, max(n_h, 1))),
        )

    y0, y0_uncond, u, u_val, u_train, probe_keys = map(np.asarray, draw(key))
    return {"labels": labels, "y0": y0, "y0_unconditional": y0_uncond, "u": u, "u_val": u_val,
            "u_train": u_train, "probe_keys": probe_keys, "n_nll": n_nll, "n_val": n_val,
            "n_h": n_h}  # fmt: skip


def _generate(cfg: DictConfig, model: MLPField, data: dict, noise: dict, cache: dict) -> dict:
    """`samples_per_class` samples of each digit and as many unconditional ones as there are
    test digits, as pixels `k/16`, with the NFE of their solves and the seconds spent."""
    s, labels = cfg.sampling, noise["labels"]

    def sample(model, label, y0):
        field = _field(model, label[0], s.guidance)
        out = sample_ode(field, y0, solver="dopri5", rtol=s.rtol, atol=s.atol)
        return out.value, jnp.broadcast_to(out.stats.num_fevals, label.shape)

    chunk = math.gcd(cfg.evaluation.samples_per_class, s.chunk)  # never mixes two labels
    (y_gen, nfe), seconds = _chunked(sample, model, (labels, noise["y0"]), chunk, cache)
    y0_uncond = noise["y0_unconditional"]
    null = np.full(y0_uncond.shape[0], NULL_LABEL, np.int32)
    (y_uncond, nfe_uncond), _ = _chunked(sample, model, (null, y0_uncond), chunk, cache,
                                         balance=False)  # fmt: skip
    transform = data["transform"]
    return {
        "labels": labels,
        "pixels": _to_levels(y_gen, transform) / (LEVELS - 1),
        "nfe": nfe,
        "seconds": seconds,
        "unconditional_pixels": _to_levels(y_uncond, transform) / (LEVELS - 1),
        "nfe_unconditional": nfe_uncond,
    }


def _entropy_bits(labels: np.ndarray) -> float:
    """Entropy (bits) of the empirical distribution of `labels` over the ten digits."""
    freq = np.bincount(labels, minlength=NUM_CLASSES) / labels.size
    freq = freq[freq > 0]
    return float(-np.sum(freq * np.log2(freq)))


def _sample_quality(cfg: DictConfig, data: dict, generated: dict) -> dict:
    """The classifier score of the samples, their W2² to the test digits against the real-data
    floor, their precision, recall and label entropy against the same for real digits, and
    their median distance to the nearest training digit."""
    x_train, c_train, x_test, c_test = (data[k] for k in ("x_train", "c_train", "x_test", "c_test"))
    labels, gen, uncond = (
        generated["labels"],
        generated["pixels"],
        generated["unconditional_pixels"],
    )
    k = cfg.evaluation.neighbours
    classifier = _classifier(x_train, c_train)
    predicted = classifier.predict(gen)
    own = classifier.predict_proba(gen)[np.arange(labels.size), labels]  # p(conditioning label)
    own_test = classifier.predict_proba(x_test)[np.arange(c_test.size), c_test]
    # Conditional samples with the test split's label counts (the first ones of each class).
    counts = np.bincount(c_test, minlength=NUM_CLASSES)
    matched = np.concatenate([gen[labels == c][: counts[c]] for c in range(NUM_CLASSES)])
    w2_conditional = wasserstein2_squared(matched, x_test)
    w2_unconditional = wasserstein2_squared(uncond, x_test)
    rng, n_test = np.random.default_rng(cfg.seed), x_test.shape[0]
    subsets = [x_train[rng.choice(x_train.shape[0], n_test, replace=False)]
               for _ in range(cfg.evaluation.floor_repeats)]  # fmt: skip
    floor = [wasserstein2_squared(x, x_test) for x in subsets]
    floor_mean = float(np.mean(floor))
    real_pr = np.array([precision_recall(x_test, x, k=k) for x in subsets])
    conditional_pr = precision_recall(x_test, matched, k=k)
    unconditional_pr = precision_recall(x_test, uncond, k=k)
    nn_test = float(np.median(_nearest_distances(x_test, x_train)))
    nn_gen = float(np.median(_nearest_distances(gen, x_train)))
    return {
        "classifier": {
            "real_test_accuracy": float(classifier.score(x_test, c_test)),
            "generated_accuracy": float(np.mean(predicted == labels)),
            "generated_accuracy_per_class": [
                float(np.mean(predicted[labels == c] == c)) for c in range(NUM_CLASSES)
            ],
            "generated_samples": int(labels.size),
            "generated_mean_probability_of_label": float(own.mean()),
            "real_test_mean_probability_of_label": float(own_test.mean()),
            "generated_mean_probability_of_label_per_class": [
                float(own[labels == c].mean()) for c in range(NUM_CLASSES)
            ],
            "unconditional_predicted_class_counts": np.bincount(
                classifier.predict(uncond), minlength=NUM_CLASSES
            ).tolist(),
        },
        "w2_squared": {
            "conditional": w2_conditional,
            "unconditional": w2_unconditional,
            "floor_train_vs_test": {"mean": floor_mean, "runs": [float(v) for v in floor]},
            "conditional_over_floor": w2_conditional / floor_mean,
            "unconditional_over_floor": w2_unconditional / floor_mean,
            "samples": int(n_test),
            "pixel_scale": "k/16 in [0, 1]",
        },
        "w2_ratio": w2_conditional / floor_mean,
        "diversity": {
            "neighbours": k,
            "space": "pixels k/16; real = the test digits",
            "conditional": {"precision": conditional_pr[0], "recall": conditional_pr[1]},
            "unconditional": {"precision": unconditional_pr[0], "recall": unconditional_pr[1]},
            "real_train_subsets": {
                "precision": float(real_pr[:, 0].mean()),
                "recall": float(real_pr[:, 1].mean()),
                "repeats": len(subsets),
            },
            "unconditional_label_entropy_bits": _entropy_bits(classifier.predict(uncond)),
            "real_test_label_entropy_bits": _entropy_bits(classifier.predict(x_test)),
        },
        "nearest_train_distance": {
            "median_generated": nn_gen,
            "median_test": nn_test,
            "ratio": nn_gen / nn_test,
        },
    }


def _nll_fn(e: DictConfig) -> Callable:
    """`−log p_Y` per point under its own label's field (`NULL_LABEL`: unconditional), with the
    NFE; exact divergence, or Hutchinson's with one probe per point when keys are given."""
    log_base = standard_normal(DIM).log_prob

    def nll(model, labels, y, probe_keys=None):
        def one(label, point, key):
            field = _field(model, label, 1.0)
            divergence = "exact" if key is None else "hutchinson"
            key = None if key is None else jax.random.wrap_key_data(key)
            out = log_likelihood(field, point, log_base, divergence=divergence, key=key,
                                 rtol=e.rtol, atol=e.atol)  # fmt: skip
            return -out.value, out.stats.num_fevals

        return jax.vmap(one)(labels, y, probe_keys)

    return nll


@functools.partial(jax.jit, static_argnames=("kind", "scale"))
def _model_space_jit(levels, u, log_p, below, above, *, kind: str, scale: float):
    """`_to_model_space` compiled once per shape and kind."""
    t = {"kind": kind, "scale": scale, "log_p": log_p, "below": below, "above": above}
    return _to_model_space(levels, u, t)


def _points(k: np.ndarray, u: np.ndarray, transform: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each image's levels repeated over its `len(u) / len(k)` draws (image `i`: rows
    `i·K … i·K + K − 1`), mapped to model space: `(y, log |det ∂T/∂x|)`."""
    levels = np.repeat(k, u.shape[0] // k.shape[0], axis=0).astype(u.dtype)
    t = transform
    y, logdet = _model_space_jit(levels, u, t["log_p"], t["below"], t["above"],
                                 kind=t["kind"], scale=t["scale"])  # fmt: skip
    return np.asarray(y), np.asarray(logdet, np.float64)


def _bounds(log_p_x: np.ndarray, draws: int) -> dict:
    """Per image (rows of `draws`): bits/dim of the importance-weighted bound with all draws
    (`iw`), with the first `1, 2, 4, …` (`by_draws`), and Jensen's (`jensen`)."""
    log_p_x = log_p_x.reshape(-1, draws) + _log_q_correction()
    counts = sorted({2**j for j in range(int(math.log2(draws)) + 1)} | {draws})
    return {
        "iw": _bits(_log_mean_exp(log_p_x)),
        "by_draws": {str(n): float(_bits(_log_mean_exp(log_p_x[:, :n])).mean()) for n in counts},
        "jensen": _bits(log_p_x.mean(1)),
    }


def _likelihood(cfg: DictConfig, model: MLPField, data: dict, noise: dict, cache: dict):
    """Test (and validation) bits/dim of the unconditional flow, class-conditional, of the
    independent-pixel model and the Gaussian copula, and Hutchinson's estimate against the
    exact divergence. Returns `(likelihood, hutchinson, figure)`, the last the arguments of
    `_likelihood_figure`."""
    e, n_nll, n_val, n_h = cfg.evaluation, noise["n_nll"], noise["n_val"], noise["n_h"]
    draws, transform = e.dequantization_draws, data["transform"]
    y_nll, logdet = _points(data["k_test"][:n_nll], noise["u"], transform)
    y_val, logdet_val = _points(data["k_validation"][:n_val], noise["u_val"], transform)
    nll = _nll_fn(e)
    null = np.full(y_nll.shape[0], NULL_LABEL, np.int32)
    (nll_y, nfe_nll), nll_seconds = _chunked(nll, model, (null, y_nll), e.chunk, cache)
    null_val = np.full(y_val.shape[0], NULL_LABEL, np.int32)
    (nll_val, _), _ = _chunked(nll, model, (null_val, y_val), e.chunk, cache)
    log_p_x = -np.asarray(nll_y, np.float64) + logdet
    test, validation = _bounds(log_p_x, draws), _bounds(-nll_val + logdet_val, draws)
    independent = data["independent"]
    flow_minus = test["iw"] - independent["per_image"][:n_nll]
    # the copula in the Gaussianised space, scored on the same draws
    g = data["gaussianize"]
    y_train, _ = _points(data["k_train"], noise["u_train"], g)
    if transform["kind"] == "gaussianize":
        points = {"test": (y_nll, logdet, draws), "validation": (y_val, logdet_val, draws)}
    else:
        points = {"test": (*_points(data["k_test"][:n_nll], noise["u"], g), draws),
                  "validation": (*_points(data["k_validation"][:n_val], noise["u_val"], g),
                                 draws)}  # fmt: skip
    copula = _gaussian_copula(y_train, points, cfg.data.copula_ridge_grid)
    likelihood = {
        "bits_per_dim": mean_se(test["iw"]),
        "bits_per_dim_by_draws": test["by_draws"],
        "bits_per_dim_jensen": mean_se(test["jensen"]),
        "validation_bits_per_dim": mean_se(validation["iw"]),
        "validation_bits_per_dim_by_draws": validation["by_draws"],
        "validation_images": n_val,
        "independent_pixels": {
            "bits_per_dim": float(independent["per_image"][:n_nll].mean()),
            "smoothing": independent["alpha"],
            "validation_bits_per_dim_by_smoothing": {
                str(a): v for a, v in independent["validation"].items()
            },
        },
        "flow_minus_independent_pixels": mean_se(flow_minus),
        "gaussian_copula": {
            "bits_per_dim": mean_se(copula["per_image"]),
            "ridge": copula["ridge"],
            "validation_bits_per_dim_by_ridge": {
                str(r): v for r, v in copula["validation"].items()
            },
        },
        "mean_nfe": float(np.mean(nfe_nll)),
        "seconds_per_image_draw": nll_seconds / y_nll.shape[0],
        "images": n_nll,
        "dequantization_draws": draws,
        "divergence": "exact",
        "model": "unconditional (null label)",
    }
    if e.conditional_nll:  # −log p(x | c) with each test image's true label
        c_nll = np.repeat(data["c_test"][:n_nll], draws).astype(np.int32)
        (nll_c, _), _ = _chunked(nll, model, (c_nll, y_nll), e.chunk, cache)
        conditional = _bounds(-np.asarray(nll_c, np.float64) + logdet, draws)
        likelihood["class_conditional_bits_per_dim"] = mean_se(conditional["iw"])
    figure = (test["iw"], independent["per_image"][:n_nll])
    if not n_h:
        return likelihood, None, (*figure, None, None, None)
    # the first n_h (image, draw) points, exact and with one Rademacher probe each
    arrays = (null[:n_h], y_nll[:n_h], noise["probe_keys"][:n_h])
    (nll_h, nfe_h), h_seconds = _chunked(nll, model, arrays, e.chunk, cache)
    bits_x = _bits(log_p_x[:n_h])  # the exact values at the same points
    bits_h = _bits(-np.asarray(nll_h, np.float64) + logdet[:n_h])
    diff = bits_h - bits_x
    hutchinson = {
        "points": int(n_h),
        "bits_per_dim_exact": float(np.mean(bits_x)),
        "bits_per_dim_hutchinson": float(np.mean(bits_h)),
        "mean_difference_bits_per_dim": mean_se(diff),
        "std_per_point_bits_per_dim": float(np.std(diff, ddof=1)) if n_h > 1 else None,
        "seconds_per_point_exact": nll_seconds / y_nll.shape[0],
        "seconds_per_point_hutchinson": h_seconds / n_h,
        "mean_nfe_exact": float(np.mean(nfe_nll[:n_h])),
        "mean_nfe_hutchinson": float(np.mean(nfe_h)),
    }
    return likelihood, hutchinson, (*figure, hutchinson, bits_h, bits_x)


# --- figures ----------------------------------------------------------------------------------


def _mosaic(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`(rows·cols, 64)` images as one `(rows·9 − 1, cols·9 − 1)` picture, 1-pixel gaps."""
    out = np.full((rows * 9 - 1, cols * 9 - 1), np.nan)
    for i in range(rows):
        for j in range(cols):
            out[i * 9 : i * 9 + 8, j * 9 : j * 9 + 8] = images[i * cols + j].reshape(8, 8)
    return out


def _samples_figure(run_dir, gen, labels, x_test, c_test, k, guidance) -> None:
    gen_rows = np.concatenate([gen[labels == c][:k] for c in range(NUM_CLASSES)])
    real = [x_test[c_test == c][:k] for c in range(NUM_CLASSES)]
    k_real = min(k, min(r.shape[0] for r in real))
    real_rows = np.concatenate([r[:k_real] for r in real])
    fig = Figure(figsize=(max(5.0, 2 + 0.45 * (k + k_real)), 5.2))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [k, k_real]})
    for ax, images, cols, title in (
        (axes[0], gen_rows, k, f"generated, guidance {guidance:g}"),
        (axes[1], real_rows, k_real, "real (test split)"),
    ):
        ax.imshow(_mosaic(images, NUM_CLASSES, cols), cmap="gray_r", vmin=0, vmax=1)
        ax.set_yticks(np.arange(NUM_CLASSES) * 9 + 3.5, [str(c) for c in range(NUM_CLASSES)])
        ax.set_xticks([])
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("digit")
    fig.tight_layout()
    fig.savefig(run_dir / "samples.png", dpi=120)


def _likelihood_figure(run_dir, bpd, bpd_independent, hutchinson, bits_h, bits_x) -> None:
    fig = Figure(figsize=(10 if hutchinson else 5, 3.6))
    axes = np.atleast_1d(fig.subplots(1, 2 if hutchinson else 1))
    bins = np.linspace(min(bpd.min(), bpd_independent.min()), max(bpd.max(), bpd_independent.max()),
                       31)  # fmt: skip
    for values, name, color in ((bpd, "flow (bound)", "C0"),
                                (bpd_independent, "independent pixels", "C1")):  # fmt: skip
        axes[0].hist(values, bins=bins, color=color, alpha=0.6,
                     label=f"{name}: mean {np.mean(values):.3f}")  # fmt: skip
    axes[0].set(xlabel="bits/dim of the discrete image", ylabel="test images",
                title="test bits/dim per image")  # fmt: skip
    axes[0].legend(fontsize=8)
    if hutchinson:
        axes[1].scatter(bits_x, bits_h, s=8)
        lim = [min(bits_x.min(), bits_h.min()), max(bits_x.max(), bits_h.max())]
        axes[1].plot(lim, lim, "k--", lw=1)
        axes[1].set(xlabel="exact divergence (bits/dim)", ylabel="Hutchinson, one probe",
                    title="same points, same dequantisation")  # fmt: skip
    fig.tight_layout()
    fig.savefig(run_dir / "likelihood.png", dpi=120)

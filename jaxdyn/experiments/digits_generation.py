"""Class-conditional flow matching on scikit-learn's 8×8 digits (issue 7 §4.2): samples, test
bits/dim, and a classifier-based score.

Data. `load_digits` (1,797 images of 8 × 8 = 64 pixels, integer levels `k ∈ {0, …, 16}`; Alpaydin
& Kaynak 1998), split per class by `jaxdyn.data.digits` with a fixed seed (`test_fraction` of
each class held out). Uniform dequantisation (Theis, van den Oord & Bethge 2016): a continuous
image is `x = k + u`, `u ~ U[0, 1)^D` drawn afresh at every training step, so `x ∈ [0, 17)^D`
in units of one intensity level, and the model sees it scaled and centred,

    y = s (x − 17/2),    s = 2 · data.half_width / 17,    so y ∈ [−half_width, half_width)^D.

Model. A class-conditional velocity `b(t, y, c) = MLP([y, φ(t), onehot(c)])` (`build_model`, a
`jaxdyn.models.MLPField` with the one-hot as its `args`) with time features
`φ(t) = (t, sin πjt, cos πjt)_{j=1..J}` and 11 label slots (the ten digits and a null label),
trained by conditional flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023) from
`y0 ~ N(0, I)` to data `y1`: `E|b(t, (1 − t) y0 + t y1, c) − (y1 − y0)|²`, `t ~ U[0, 1]`
(`jaxdyn.generative.flow_matching_loss`). The label enters that loss as extra coordinates of the
state that both endpoints share (`[y, onehot(c)]`), so the interpolant keeps them fixed and the
augmented field returns zero velocity for them: the loss is exactly the conditional one. With
probability `model.label_dropout` the label is replaced by the null label during training
(classifier-free guidance training, Ho & Salimans 2022), so the same network is also an
*unconditional* velocity `b(t, y, ∅)`: the likelihoods below are of that unconditional model
unless labelled class-conditional. Sampling transports `N(0, I)` by `dy/dt = b` from `t = 0` to
1 with dopri5 (`jaxdyn.generative.sample_ode`, one step sequence for each chunk of
`sampling.chunk` samples of a label: the NFE reported is per such joint solve); with
`sampling.guidance = w ≠ 1` the field is `b(·, ∅) + w (b(·, c) − b(·, ∅))`. A generated `y`
is mapped back to a level by `k = clip(⌊y/s + 17/2⌋, 0, 16)` and to digits' pixel scale `k/16`.

Bits per dimension. The instantaneous change of variables
(`jaxdyn.generative.log_likelihood`: Chen et al. 2018, FFJORD of Grathwohl et al. 2019) gives
the continuous model's `log p_Y(y)`; in level units `log p_X(x) = log p_Y(y) + D log s`. Since
the bins `k + [0, 1)^D` have unit volume, Jensen's inequality bounds the discrete model's
likelihood, `log P(k) ≥ E_u log p_X(k + u)` (Theis et al. 2016), so for each test image

    bits/dim(k) = E_u[−log p_Y(s (k + u − 17/2)) − D log s] / (D log 2),

estimated with `evaluation.dequantization_draws` independent draws of `u` per image (not the
centred-bin `u = 1/2`: the average over draws is an upper bound on the discrete NLL, in
expectation; the log-mean-exp over the same draws, a tighter importance-weighted bound, is
reported beside it). The reported number is the mean over test images with its standard error
(standard deviation across images / √n). For scale, the exact discrete bits/dim of independent
pixels (a categorical over the 17 levels per pixel, fitted to the training digits with add-one
smoothing) is reported too: flow matching does not maximise the likelihood. The divergence
inside the likelihood is exact (the trace of the 64 × 64 Jacobian, 64 JVPs per evaluation);
Hutchinson's one-probe estimate (Rademacher) is run on the first `evaluation.hutchinson_images`
points for comparison: its mean, its spread around the exact value, and the cost of each
(seconds per point, compiled, and NFE: evaluations of the augmented field `[b, ∇·b]`, each exact
one costing 64 JVPs). The maximum-entropy reference is `log₂ 17 ≈ 4.09` bits/dim.

Sample quality. A multinomial logistic regression (scikit-learn) is trained on the real
training digits (pixel scale `k/16`); its accuracy on the real test digits is reported next to
its accuracy on `evaluation.samples_per_class` class-conditional samples of each digit, scored
against the label they were generated with. The squared 2-Wasserstein distance by exact optimal
transport (`jaxdyn.metrics.wasserstein2_squared`, pixel scale `k/16`) between the test digits
and as many generated digits (class-conditional with the test set's label counts, and
unconditional) is compared with the same distance between the test digits and as many real
training digits (`evaluation.floor_repeats` random subsets: the sampling floor). The median
distance from each generated digit to its nearest training digit, over the same for the test
digits, says whether samples are further from the data than new real digits are (> 1) or copies
of training digits (≪ 1).

Targets (`target`): classifier accuracy on the conditional samples, and the conditional W2²
within `w2_ratio` × the floor.
"""

import dataclasses
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

from ..config import ConfigError, TrainConfig, at_least, choice, fraction, positive, section
from ..data import digits
from ..generative import flow_matching_loss, log_likelihood, sample_ode, standard_normal
from ..metrics import wasserstein2_squared
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


# --- config -----------------------------------------------------------------------------------


@dataclasses.dataclass
class DigitsDataConfig:
    test_fraction: float = fraction(0.2)
    half_width: float = positive(1.0)  # dequantised data scaled to [-half_width, half_width)


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
    dequantization_draws: int = at_least(4, 1)
    conditional_nll: bool = True  # also log p(x | true label), labelled as such
    hutchinson_images: int = at_least(64, 0)  # 0: no Hutchinson comparison
    rtol: float = positive(1e-5)
    atol: float = positive(1e-5)
    chunk: int = at_least(60, 1)  # images per compiled likelihood call
    floor_repeats: int = at_least(5, 1)


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


def _to_model_space(levels: Array, u: Array, scale: float) -> Array:
    return scale * (levels + u - LEVELS / 2)


def _to_levels(y: Array, scale: float) -> np.ndarray:
    return np.clip(np.floor(np.asarray(y) / scale + LEVELS / 2), 0, LEVELS - 1)


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


def _independent_pixels_bits(k_train: np.ndarray, k_test: np.ndarray) -> float:
    """Test bits/dim of the reference model with independent pixels, each a categorical over
    the 17 levels fitted to the training digits with add-one (Laplace) smoothing."""
    counts = np.stack([np.bincount(col, minlength=LEVELS) for col in k_train.astype(int).T])
    log_p = np.log2((counts + 1) / (k_train.shape[0] + LEVELS))  # (64, 17)
    return float(-np.mean(log_p[np.arange(DIM), k_test.astype(int)]))


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
    class samples to match the largest test class, and enough training digits for the floor."""
    e = cfg.evaluation
    if e.grid_samples > e.samples_per_class:
        raise ConfigError(
            f"evaluation.grid_samples={e.grid_samples} must be <= "
            f"evaluation.samples_per_class={e.samples_per_class}"
        )
    split = digits(test_fraction=cfg.data.test_fraction, seed=cfg.seed)
    largest = int(np.bincount(split["test"][1], minlength=NUM_CLASSES).max())
    if largest > e.samples_per_class:
        raise ConfigError(
            f"evaluation.samples_per_class={e.samples_per_class} must be >= the largest test "
            f"class ({largest}) for the conditional W2"
        )
    if split["train"][0].shape[0] < split["test"][0].shape[0]:
        raise ConfigError(
            f"data.test_fraction={cfg.data.test_fraction} leaves a training split smaller than "
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
    generated = _generate(cfg, model, noise, cache)
    quality = _sample_quality(cfg, data, generated)
    likelihood, hutchinson, figure = _likelihood(cfg, model, data, noise, cache)

    rows = read_metrics(run_dir / "metrics.jsonl")
    if rows:
        loss_curve(np.asarray([r["loss"] for r in rows]), run_dir / "loss.png",
                   title="digits_generation: flow matching loss")  # fmt: skip
    _samples_figure(run_dir, generated["pixels"], generated["labels"], data["x_test"],
                    data["c_test"], cfg.evaluation.grid_samples, cfg.sampling.guidance)  # fmt: skip
    _likelihood_figure(run_dir, *figure)
    t = cfg.target
    accuracy, w2_ratio = quality["classifier"]["generated_accuracy"], quality["w2_ratio"]
    return {
        "target": {"classifier_accuracy": t.classifier_accuracy, "w2_ratio": t.w2_ratio},
        "target_met": bool(accuracy >= t.classifier_accuracy and w2_ratio <= t.w2_ratio),
        "classifier": quality["classifier"],
        "w2_squared": quality["w2_squared"],
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
            "test": int(data["x_test"].shape[0]),
            "scale": data["scale"],
        },
        "train_seconds": train_seconds,
        "steps": result.step,
    }


def _data(cfg: DictConfig) -> dict:
    """The split (pixels `k/16`, labels), its integer levels `k` and the model-space scale."""
    split = digits(test_fraction=cfg.data.test_fraction, seed=cfg.seed)
    (x_train, c_train), (x_test, c_test) = split["train"], split["test"]
    return {
        "x_train": x_train,
        "c_train": c_train,
        "x_test": x_test,
        "c_test": c_test,
        "k_train": np.rint(x_train * (LEVELS - 1)),  # integer levels 0..16
        "k_test": np.rint(x_test * (LEVELS - 1)),
        "scale": _scale(cfg.data.half_width),
    }


def _train(cfg: DictConfig, model: MLPField, data: dict, dtype, key, run_dir: Path, resume):
    """Conditional flow matching on freshly dequantised digits, labels dropped to the null
    label with probability `model.label_dropout` (see the module)."""
    dropout, scale = cfg.model.label_dropout, data["scale"]

    def loss_fn(model: MLPField, batch, key):
        levels, labels = batch
        k_u, k_drop, k_base, k_fm = jax.random.split(key, 4)
        y1 = _to_model_space(levels, jax.random.uniform(k_u, levels.shape, dtype), scale)
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
    likelihood points and the Hutchinson probes' keys, with the sizes they follow from."""
    e = cfg.evaluation
    n_test = data["x_test"].shape[0]
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), e.samples_per_class)
    n_nll = n_test if e.nll_images is None else min(e.nll_images, n_test)
    n_h = min(e.hutchinson_images, n_nll * e.dequantization_draws)

    @jax.jit
    def draw(key):
        k_cond, k_uncond, k_u, k_probe = jax.random.split(key, 4)
        return (
            jax.random.normal(k_cond, (labels.size, DIM), dtype),
            jax.random.normal(k_uncond, (n_test, DIM), dtype),
            jax.random.uniform(k_u, (n_nll * e.dequantization_draws, DIM), dtype),
            jax.random.key_data(jax.random.split(k_probe, max(n_h, 1))),
        )

    y0, y0_uncond, u, probe_keys = map(np.asarray, draw(key))
    return {"labels": labels, "y0": y0, "y0_unconditional": y0_uncond, "u": u,
            "probe_keys": probe_keys, "n_nll": n_nll, "n_h": n_h}  # fmt: skip


def _generate(cfg: DictConfig, model: MLPField, noise: dict, cache: dict) -> dict:
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
    scale = _scale(cfg.data.half_width)
    return {
        "labels": labels,
        "pixels": _to_levels(y_gen, scale) / (LEVELS - 1),
        "nfe": nfe,
        "seconds": seconds,
        "unconditional_pixels": _to_levels(y_uncond, scale) / (LEVELS - 1),
        "nfe_unconditional": nfe_uncond,
    }


def _sample_quality(cfg: DictConfig, data: dict, generated: dict) -> dict:
    """The classifier score of the samples, their W2² to the test digits against the real-data
    floor, and their median distance to the nearest training digit."""
    x_train, c_train, x_test, c_test = (data[k] for k in ("x_train", "c_train", "x_test", "c_test"))
    labels, gen, uncond = (
        generated["labels"],
        generated["pixels"],
        generated["unconditional_pixels"],
    )
    classifier = _classifier(x_train, c_train)
    predicted = classifier.predict(gen)
    # Conditional samples with the test split's label counts (the first ones of each class).
    counts = np.bincount(c_test, minlength=NUM_CLASSES)
    matched = np.concatenate([gen[labels == c][: counts[c]] for c in range(NUM_CLASSES)])
    w2_conditional = wasserstein2_squared(matched, x_test)
    w2_unconditional = wasserstein2_squared(uncond, x_test)
    rng, n_test = np.random.default_rng(cfg.seed), x_test.shape[0]
    floor = [
        wasserstein2_squared(x_train[rng.choice(x_train.shape[0], n_test, replace=False)], x_test)
        for _ in range(cfg.evaluation.floor_repeats)
    ]
    floor_mean = float(np.mean(floor))
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


def _to_bits(nll_y: np.ndarray, offset: float) -> np.ndarray:
    """`−log p_Y` in model space to bits/dim of `p_X` in level units (`offset = D log s`)."""
    return (nll_y - offset) / (DIM * math.log(2))


def _iw_bits(nll_y: np.ndarray, offset: float, draws: int) -> np.ndarray:
    """`−log mean_u p_X` per image over its dequantisation draws, in bits/dim."""
    logp = -(nll_y.reshape(-1, draws) - offset)
    top = logp.max(1, keepdims=True)
    lme = top[:, 0] + np.log(np.mean(np.exp(logp - top), 1))
    return -lme / (DIM * math.log(2))


def _likelihood(cfg: DictConfig, model: MLPField, data: dict, noise: dict, cache: dict):
    """Test bits/dim of the unconditional model (and class-conditional), and Hutchinson's
    estimate against the exact divergence. Returns `(likelihood, hutchinson, figure)`, the last
    the arguments of `_likelihood_figure`."""
    e, n_nll, n_h = cfg.evaluation, noise["n_nll"], noise["n_h"]
    draws = e.dequantization_draws
    scale = data["scale"]
    k_nll = np.repeat(data["k_test"][:n_nll], draws, axis=0)  # image i: rows i·draws …
    c_nll = np.repeat(data["c_test"][:n_nll], draws)
    y_nll = _to_model_space(k_nll.astype(noise["u"].dtype), noise["u"], scale)
    offset = DIM * math.log(scale)  # log p_X = log p_Y + D log s
    nll = _nll_fn(e)
    null = np.full(k_nll.shape[0], NULL_LABEL, np.int32)
    (nll_y, nfe_nll), nll_seconds = _chunked(nll, model, (null, y_nll), e.chunk, cache)
    bpd = _to_bits(nll_y.reshape(-1, draws), offset).mean(1)
    likelihood = {
        "bits_per_dim": mean_se(bpd),
        "bits_per_dim_importance_weighted": mean_se(_iw_bits(nll_y, offset, draws)),
        "nll_nats_model_space": mean_se(nll_y.reshape(-1, draws).mean(1)),
        "mean_nfe": float(np.mean(nfe_nll)),
        "seconds_per_image_draw": nll_seconds / k_nll.shape[0],
        "images": n_nll,
        "dequantization_draws": draws,
        "divergence": "exact",
        "model": "unconditional (null label)",
        "independent_pixels_baseline_bits_per_dim": _independent_pixels_bits(
            data["k_train"], data["k_test"]
        ),
    }
    if e.conditional_nll:  # −log p(x | c) with each test image's true label
        (nll_c, _), _ = _chunked(nll, model, (c_nll.astype(np.int32), y_nll), e.chunk, cache)
        bits_c = _to_bits(nll_c.reshape(-1, draws), offset).mean(1)
        likelihood["class_conditional_bits_per_dim"] = mean_se(bits_c)
    if not n_h:
        return likelihood, None, (bpd, None, None, None, offset)
    # the first n_h (image, draw) points, exact and with one Rademacher probe each
    arrays = (null[:n_h], y_nll[:n_h], noise["probe_keys"][:n_h])
    (nll_h, nfe_h), h_seconds = _chunked(nll, model, arrays, e.chunk, cache)
    nll_x = nll_y[:n_h]  # the exact values at the same points
    diff = (nll_h - nll_x) / (DIM * math.log(2))
    hutchinson = {
        "points": int(n_h),
        "bits_per_dim_exact": float(np.mean(_to_bits(nll_x, offset))),
        "bits_per_dim_hutchinson": float(np.mean(_to_bits(nll_h, offset))),
        "mean_difference_bits_per_dim": mean_se(diff),
        "std_per_point_bits_per_dim": float(np.std(diff, ddof=1)) if n_h > 1 else None,
        "seconds_per_point_exact": nll_seconds / k_nll.shape[0],
        "seconds_per_point_hutchinson": h_seconds / n_h,
        "mean_nfe_exact": float(np.mean(nfe_nll[:n_h])),
        "mean_nfe_hutchinson": float(np.mean(nfe_h)),
    }
    return likelihood, hutchinson, (bpd, hutchinson, nll_h, nll_x, offset)


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


def _likelihood_figure(run_dir, bpd, hutchinson, nll_h, nll_x, offset) -> None:
    fig = Figure(figsize=(10 if hutchinson else 5, 3.6))
    axes = np.atleast_1d(fig.subplots(1, 2 if hutchinson else 1))
    axes[0].hist(bpd, bins=30, color="C0")
    axes[0].axvline(float(np.mean(bpd)), color="k", lw=1, label=f"mean {np.mean(bpd):.3f}")
    axes[0].set(xlabel="bits/dim (unconditional model)", ylabel="test images",
                title="test bits/dim per image")  # fmt: skip
    axes[0].legend(fontsize=8)
    if hutchinson:
        exact, estimate = _to_bits(nll_x, offset), _to_bits(nll_h, offset)
        axes[1].scatter(exact, estimate, s=8)
        lim = [min(exact.min(), estimate.min()), max(exact.max(), estimate.max())]
        axes[1].plot(lim, lim, "k--", lw=1)
        axes[1].set(xlabel="exact divergence (bits/dim)", ylabel="Hutchinson, one probe",
                    title="same points, same dequantisation")  # fmt: skip
    fig.tight_layout()
    fig.savefig(run_dir / "likelihood.png", dpi=120)

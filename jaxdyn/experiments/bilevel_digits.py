"""Bilevel problems on scikit-learn's 8×8 digits whose inner problem is a multinomial logistic
regression, solved by L-BFGS and differentiated implicitly (Blondel et al. 2022):

    θ ↦ L_outer(W*(θ)),   W*(θ) = argmin_W  Σᵢ wᵢ(θ) ℓ(W; xᵢ(θ), yᵢ) / n + (λ/2) ‖W‖²,

with `ℓ` the cross-entropy of `softmax(x W + b)` and `‖W‖²` over weights and bias (an
unregularised bias leaves the softmax's shift direction without curvature, and the
implicit-function linear system is then singular).

- `distillation`: the inputs `xᵢ(θ)` are ten learned images, one per class (dataset
  distillation, Wang et al. 2018; Blondel et al. 2022 §4); the outer loss is the cross-entropy
  on the real training set. Target: test accuracy ≥ 80%. The inner L2 strength of the
  distilled model and of the references (the whole training set; one random real image per
  class) is each chosen on a validation split from a grid.
- `reweighting`: the per-sample weights `wᵢ = sigmoid(aᵢ)` of a training set with 30% of its
  labels flipped are learned by the hypergradient of the cross-entropy on a clean validation
  split (data reweighting as a bilevel problem: Ren et al. 2018; ScaleBiO, Pan et al. 2024).
  Targets: test accuracy ≥ 5 points above uniform weights; AUROC ≥ 0.9 of the weights
  separating clean from flipped samples. The default L2 is weak (1e-4), the regime where
  uniform weights fit the flipped labels; the summary also reports, as references, uniform
  weights with the L2 chosen on the validation split and a regression on the clean validation
  split alone, which come closer to the learned weights (or beat them).
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, fraction, positive, positive_list, section
from ..data import digits
from ..implicit import SolveInfo, argmin
from ..plotting import Figure, loss_curve
from ..train import read_metrics
from ._registry import register
from ._splits import check_digits_split
from ._training import fit_from_config

NUM_CLASSES = 10
Params = tuple[Float[Array, "64 10"], Float[Array, " 10"]]


@dataclasses.dataclass
class LBFGSConfig:
    """The inner L-BFGS stopping rule: `‖∇‖ ≤ tol` within `max_steps` iterations, else an
    error."""

    tol: float = positive(1e-5)
    max_steps: int = at_least(2000, 1)


@dataclasses.dataclass
class InnerConfig(LBFGSConfig):
    """The inner logistic regression: L2 strength `l2` (on weights and bias) and L-BFGS
    stopping rule."""

    l2: float = positive(1e-2)


@dataclasses.dataclass
class DistillationConfig:
    experiment: str = "distillation"
    seed: int = 0
    test_fraction: float = fraction(0.2)
    validation_fraction: float = fraction(0.15)
    target_accuracy: float = 0.8
    init_scale: float = at_least(0.1, 0.0)  # images start as sigmoid(init_scale · N(0, 1))
    # The inner L2 strength of each logistic regression (distilled, references), chosen on
    # the validation split from this grid; one distillation per value.
    l2_grid: list[float] = positive_list([1e-4, 1e-3, 1e-2, 1e-1], "L2 strengths")
    # The references' grid: reaching lower (at 1e-5 the distilled model's inner linear system
    # was not solved for one seed; the whole training set chose the smallest value above).
    reference_l2_grid: list[float] = positive_list(
        [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "L2 strengths"
    )
    inner: LBFGSConfig = section(LBFGSConfig)
    train: TrainConfig = section(TrainConfig, steps=300, batch_size=None, lr=0.1, chunk=50)


@dataclasses.dataclass
class ReweightingConfig:
    experiment: str = "reweighting"
    seed: int = 0
    test_fraction: float = fraction(0.2)
    validation_fraction: float = fraction(0.2)
    noise_fraction: float = fraction(0.3)  # training labels flipped to another class
    init_logit: float = 4.0  # weights start at sigmoid(init_logit)
    keep_fraction: float = fraction(0.7)  # top-k refit
    target_gain: float = 0.05  # test accuracy over uniform weights
    target_auroc: float = 0.9
    inner: InnerConfig = section(InnerConfig, l2=1e-4)
    train: TrainConfig = section(TrainConfig, steps=300, batch_size=None, lr=0.1, chunk=50)


# --- the inner problem ------------------------------------------------------------------------


def cross_entropies(
    params: Params, images: Float[Array, "n 64"], labels: Int[Array, " n"]
) -> Float[Array, " n"]:
    """`ℓᵢ = -log softmax(xᵢ W + b)_{yᵢ}` for each sample."""
    weight, bias = params
    log_p = jax.nn.log_softmax(images @ weight + bias)
    return -jnp.take_along_axis(log_p, labels[:, None], 1)[:, 0]


def fit_logistic(
    images: Float[Array, "n 64"],
    labels: Int[Array, " n"],
    sample_weights: Float[Array, " n"] | None,
    inner: "InnerConfig | DictConfig",
) -> tuple[Params, SolveInfo]:
    """`argmin_{W,b} Σᵢ wᵢ ℓᵢ / n + (λ/2)(‖W‖² + ‖b‖²)` by L-BFGS from zero, with
    `λ = inner.l2`; differentiable in `images` and `sample_weights` by the implicit function
    theorem (`None`: wᵢ = 1). Raises if L-BFGS does not reach `inner.tol`."""
    labels = jnp.asarray(labels)
    if sample_weights is None:
        sample_weights = jnp.ones(labels.shape, jnp.float32)
    l2 = jnp.asarray(inner.l2, jnp.float32)  # traced: one compilation serves every λ
    return _fit_logistic(images, labels, sample_weights, l2, inner.tol, inner.max_steps)


@eqx.filter_jit
def _fit_logistic(images, labels, sample_weights, l2, tol: float, max_steps: int):
    def objective(params, theta):
        x, w = theta
        weight, bias = params
        penalty = jnp.sum(weight**2) + jnp.sum(bias**2)
        return jnp.mean(w * cross_entropies(params, x, labels)) + 0.5 * l2 * penalty

    x0 = (jnp.zeros((images.shape[-1], NUM_CLASSES)), jnp.zeros(NUM_CLASSES))
    return argmin(
        objective, x0, (images, sample_weights), solver="lbfgs", tol=tol, max_steps=max_steps
    )


def accuracy(params: Params, images, labels) -> float:
    weight, bias = params
    predicted = np.asarray(jnp.argmax(jnp.asarray(images) @ weight + bias, -1))
    return float(np.mean(predicted == np.asarray(labels)))


def l2_on_validation(
    x, y, sample_weights, inner: "LBFGSConfig | DictConfig", grid, validation
) -> tuple[float, Params, float]:
    """`(l2, params, validation accuracy)`: the logistic regression fitted with each L2
    strength of `grid` and the one with the best accuracy on `validation = (x, y)`
    (`best_l2`)."""
    fits = {float(l2): fit_logistic(x, y, sample_weights, _with_l2(inner, l2))[0] for l2 in grid}
    scores = {l2: accuracy(params, *validation) for l2, params in fits.items()}
    l2 = best_l2(scores)
    return l2, fits[l2], scores[l2]


def best_l2(scores: dict[float, float]) -> float:
    """The L2 strength with the best validation accuracy in `{l2: accuracy}`, the smallest
    among ties."""
    return max(scores, key=lambda l2: (scores[l2], -l2))


def _with_l2(inner: "LBFGSConfig | DictConfig", l2: float) -> InnerConfig:
    return InnerConfig(tol=inner.tol, max_steps=inner.max_steps, l2=float(l2))


def _inner_record(rows: list[dict]) -> dict:
    """Convergence of the inner solves over the outer steps (logged per step)."""
    iterations = np.asarray([r["inner_iterations"] for r in rows])
    converged = np.asarray([r["inner_converged"] for r in rows])
    return {
        "inner_iterations_mean": float(iterations.mean()) if rows else None,
        "inner_iterations_max": int(iterations.max()) if rows else None,
        "inner_fraction_converged": float(converged.mean()) if rows else None,
    }


def _aux(info: SolveInfo) -> dict:
    return {
        "inner_iterations": info.iterations,
        "inner_error": info.error,
        "inner_converged": info.converged.astype(jnp.float32),
    }


# --- dataset distillation ---------------------------------------------------------------------


class DistilledImages(eqx.Module):
    """Ten learned images, one per class: `sigmoid(logits)`, so pixels stay in (0, 1) like
    the data."""

    logits: Float[Array, "10 64"]

    @property
    def images(self) -> Float[Array, "10 64"]:
        return jax.nn.sigmoid(self.logits)


def _image_grid(path: Path, rows: list[tuple[str, np.ndarray, tuple]], title: str) -> None:
    """One row of ten 8×8 images per entry `(name, images, (vmin, vmax))`."""
    fig = Figure(figsize=(8, 0.6 + 0.95 * len(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), NUM_CLASSES))
    for r, (name, images, (low, high)) in enumerate(rows):
        for c in range(NUM_CLASSES):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(8, 8), cmap="gray_r", vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(c))
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _distil(cfg: DictConfig, l2: float, train, run_dir: Path, resume: bool, key):
    """Ten images, one per class, learned so that the logistic regression with L2 strength
    `l2` fitted on them has the smallest cross-entropy on `train`; `(images, fit result)`."""
    init_key, train_key = jax.random.split(key)
    model = DistilledImages(cfg.init_scale * jax.random.normal(init_key, (NUM_CLASSES, 64)))
    classes = np.arange(NUM_CLASSES, dtype=np.int32)
    inner = _with_l2(cfg.inner, l2)

    def loss_fn(model: DistilledImages, batch, key):
        x, y = batch
        params, info = fit_logistic(model.images, classes, None, inner)
        return jnp.mean(cross_entropies(params, x, y)), _aux(info)

    run_dir.mkdir(parents=True, exist_ok=True)
    data = tuple(map(jnp.asarray, train))
    result = fit_from_config(loss_fn, model, data, cfg.train, key=train_key, run_dir=run_dir,
                             resume=resume, has_aux=True)  # fmt: skip
    return np.asarray(result.model.images), result


@register("distillation", DistillationConfig, check=check_digits_split)
def run_distillation(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Dataset distillation on load_digits: one learned image per class; target test acc >= 80%."""
    data = digits(test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction,
                  seed=cfg.seed)  # fmt: skip
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    validation = data["validation"]
    classes = np.arange(NUM_CLASSES, dtype=np.int32)
    key = jax.random.key(cfg.seed)
    # One distillation per L2 strength (each in its folder), the one best on validation kept.
    runs = {}
    for l2 in sorted(cfg.l2_grid):
        images, result = _distil(cfg, l2, (x_train, y_train), run_dir / f"l2_{l2:g}", resume, key)
        params, _ = fit_logistic(jnp.asarray(images), classes, None, _with_l2(cfg.inner, l2))
        runs[l2] = (accuracy(params, *validation), images, params, result)
    l2 = best_l2({v: run[0] for v, run in runs.items()})
    val_acc, distilled, params, result = runs[l2]

    # References, each with its L2 strength chosen on validation: one random real image per
    # class, and the whole training set.
    rng = np.random.default_rng(cfg.seed)
    pick = np.array([rng.choice(np.flatnonzero(y_train == c)) for c in classes])
    random_real = x_train[pick]
    grid = list(cfg.reference_l2_grid)
    l2_random, params_random, _ = l2_on_validation(jnp.asarray(random_real), classes, None,
                                                   cfg.inner, grid, validation)  # fmt: skip
    l2_full, params_full, _ = l2_on_validation(jnp.asarray(x_train), y_train, None, cfg.inner,
                                               grid, validation)  # fmt: skip

    test_acc = accuracy(params, x_test, y_test)
    rows = read_metrics(run_dir / f"l2_{l2:g}" / "metrics.jsonl")
    _distillation_figures(run_dir, rows, distilled, random_real, test_acc,
                          accuracy(params_random, x_test, y_test))  # fmt: skip
    return {
        "test_accuracy": test_acc,
        "train_accuracy": accuracy(params, x_train, y_train),
        "validation_accuracy": val_acc,
        "l2": l2,
        "validation_accuracy_per_l2": {f"{v:g}": runs[v][0] for v in runs},
        "target_accuracy": cfg.target_accuracy,
        "target_met": test_acc >= cfg.target_accuracy,
        "test_accuracy_random_real_images": accuracy(params_random, x_test, y_test),
        "l2_random_real_images": l2_random,
        "test_accuracy_full_training_set": accuracy(params_full, x_test, y_test),
        "l2_full_training_set": l2_full,
        "final_outer_loss": float(rows[-1]["loss"]) if rows else None,
        **_inner_record(rows),
        "steps": result.step,
    }


def _distillation_figures(run_dir, rows, distilled, random_real, test_acc, random_acc):
    loss_curve(np.asarray([r["loss"] for r in rows]), run_dir / "outer_loss.png",
               title="distillation: cross-entropy on the real training set")  # fmt: skip
    _image_grid(
        run_dir / "distilled_images.png",
        [
            ("distilled", distilled, (0, 1)),
            ("stretched", distilled, (distilled.min(), distilled.max())),
            ("random real", random_real, (0, 1)),
        ],
        f"Distilled digits (test acc {test_acc:.1%}; the same on a contrast-stretched scale)\n"
        f"vs one random real image per class ({random_acc:.1%})",
    )


# --- data reweighting under label noise -------------------------------------------------------


class SampleWeights(eqx.Module):
    """Per-sample weights `sigmoid(logits)` in (0, 1): bounded, so the outer problem can
    only down-weight samples, never let a few outweigh the rest (Ren et al. 2018 clip
    weights at zero and normalise them instead)."""

    logits: Float[Array, " n"]

    @property
    def weights(self) -> Float[Array, " n"]:
        return jax.nn.sigmoid(self.logits)


def flip_labels(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Exactly `round(fraction · n)` labels, chosen at random, moved to a different class
    drawn uniformly; returns `(noisy labels, flipped mask)`."""
    n = labels.size
    flipped = np.zeros(n, bool)
    flipped[rng.permutation(n)[: round(fraction * n)]] = True
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, NUM_CLASSES, flipped.sum())) % NUM_CLASSES
    return noisy, flipped


def _weight_histogram(path: Path, weights: np.ndarray, flipped: np.ndarray, auroc: float):
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    ax.hist(weights[~flipped], bins=bins, alpha=0.6, label=f"clean ({(~flipped).sum()})")
    ax.hist(weights[flipped], bins=bins, alpha=0.6, label=f"flipped ({flipped.sum()})")
    ax.set(xlabel="learned weight sigmoid(a)", ylabel="training samples",
           title=f"Learned sample weights (AUROC clean vs flipped {auroc:.3f})")  # fmt: skip
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _test_accuracies(cfg: DictConfig, data: dict, y_noisy, flipped, weights) -> dict:
    """Test accuracy of the logistic regression refitted with the learned weights, with
    uniform weights and on the top-k samples, and the references (not targets): no noisy
    sample at all; the clean validation split alone; uniform weights with the L2 strength
    chosen on the validation split."""
    (x_train, _), (x_val, y_val) = data["train"], data["validation"]
    x_test, y_test = data["test"]
    x_train, y_noisy = jnp.asarray(x_train), jnp.asarray(y_noisy)

    def test_accuracy(sample_weights, x=x_train, y=y_noisy, inner=cfg.inner):
        w = None if sample_weights is None else jnp.asarray(sample_weights, jnp.float32)
        params, _ = fit_logistic(x, y, w, inner)
        return accuracy(params, x_test, y_test)

    grid = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    best_l2, _, _ = l2_on_validation(x_train, y_noisy, None, cfg.inner, grid, (x_val, y_val))
    keep = weights >= np.quantile(weights, 1 - cfg.keep_fraction)
    return {
        "uniform": test_accuracy(None),
        "learned": test_accuracy(weights),
        "top_k": test_accuracy(keep),
        "without_flipped": test_accuracy(~flipped),
        "validation_only": test_accuracy(None, jnp.asarray(x_val), jnp.asarray(y_val)),
        "uniform_tuned_l2": test_accuracy(None, inner=_with_l2(cfg.inner, best_l2)),
        "tuned_l2": best_l2,
    }


@register("reweighting", ReweightingConfig, check=check_digits_split)
def run_reweighting(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Bilevel sample reweighting under 30% label noise; targets +5 points test acc, AUROC 0.9."""
    from sklearn.metrics import roc_auc_score  # scikit-learn is imported where it is used

    data = digits(
        test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction,
        seed=cfg.seed,
    )  # fmt: skip
    (x_train, y_train), (x_val, y_val) = data["train"], data["validation"]
    noise_rng = np.random.default_rng([cfg.seed, 1])  # independent of the split's stream
    y_noisy, flipped = flip_labels(y_train, cfg.noise_fraction, noise_rng)
    x_train_j, y_noisy_j = jnp.asarray(x_train), jnp.asarray(y_noisy)
    model = SampleWeights(jnp.full((y_noisy.size,), cfg.init_logit, jnp.float32))

    def loss_fn(model: SampleWeights, batch, key):
        x, y = batch
        params, info = fit_logistic(x_train_j, y_noisy_j, model.weights, cfg.inner)
        return jnp.mean(cross_entropies(params, x, y)), _aux(info)

    result = fit_from_config(
        loss_fn, model, (jnp.asarray(x_val), jnp.asarray(y_val)), cfg.train,
        key=jax.random.key(cfg.seed), run_dir=run_dir, resume=resume, has_aux=True,
    )  # fmt: skip
    weights = np.asarray(result.model.weights)
    auroc = float(roc_auc_score(~flipped, weights))
    acc = _test_accuracies(cfg, data, y_noisy, flipped, weights)

    rows = read_metrics(run_dir / "metrics.jsonl")
    loss_curve(np.asarray([r["loss"] for r in rows]), run_dir / "validation_loss.png",
               title="reweighting: cross-entropy on the clean validation split")  # fmt: skip
    _weight_histogram(run_dir / "weights.png", weights, flipped, auroc)
    gain = acc["learned"] - acc["uniform"]
    return {
        "test_accuracy_uniform": acc["uniform"],
        "test_accuracy_learned": acc["learned"],
        "test_accuracy_gain": gain,
        "test_accuracy_top_k": acc["top_k"],
        "keep_fraction": cfg.keep_fraction,
        "auroc_clean_vs_flipped": auroc,
        "target_gain": cfg.target_gain,
        "target_auroc": cfg.target_auroc,
        "target_met": bool(gain >= cfg.target_gain and auroc >= cfg.target_auroc),
        "mean_weight_clean": float(weights[~flipped].mean()),
        "mean_weight_flipped": float(weights[flipped].mean()),
        "reference_test_accuracy_without_flipped": acc["without_flipped"],
        "reference_test_accuracy_validation_only": acc["validation_only"],
        "reference_test_accuracy_uniform_tuned_l2": acc["uniform_tuned_l2"],
        "reference_tuned_l2": acc["tuned_l2"],
        "num_train": int(y_noisy.size),
        "num_flipped": int(flipped.sum()),
        "num_validation": int(y_val.size),
        "final_validation_loss": float(rows[-1]["loss"]) if rows else None,
        **_inner_record(rows),
        "steps": result.step,
    }

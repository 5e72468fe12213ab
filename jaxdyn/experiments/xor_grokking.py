"""Benign overfitting, then grokking, of XOR cluster data by a two-layer ReLU network (Xu, Wang,
Frei, Vardi & Hu 2024, "Benign overfitting and grokking in ReLU networks for XOR cluster data",
ICLR, arXiv:2310.02541).

Setting. `n` training draws of `xor_clusters` (`jaxdyn.learning`): `x = μ + ξ` in `R^d`,
`ξ ~ N(0, I_d)`, `μ` uniform over `±μ₁` (label `+1`) and `±μ₂` (label `−1`), `μ₁ ⊥ μ₂`,
`‖μ₁‖ = ‖μ₂‖ = data.mean_norm`, each label flipped with probability `η = data.label_noise`;
`n ≪ d`, so the training noise vectors are nearly orthogonal and any labelling can be fitted.
The network `f(x) = Σ_j a_j ReLU(⟨w_j, x⟩)` has `m` neurons, the second layer fixed at
`a_j = ±1/√m` (half each), the first initialised `w_j ~ N(0, ω² I_d)` with a small `ω`
(`network.init_scale`), and is trained by full-batch gradient descent with a fixed step on the
logistic loss `L(W) = (1/n) Σ_i log(1 + exp(−y_i f(x_i)))` (Xu et al.'s setting).

Claim (Xu et al.). After the first step the network fits every training label, the flipped ones
included, while its test accuracy is near chance (it is near a linear classifier, and XOR data
have none better than chance); later it reaches near-optimal test accuracy while still fitting
the flipped labels: harmful overfitting that turns benign (grokking).

Measured. Train accuracy against the observed (noisy) labels and test accuracy on a fresh draw of
`data.num_test` points (noisy labels, and clean labels) after every step of one jitted
`lax.scan`. The Bayes accuracy `xor_bayes_accuracy` on noisy labels (`≈ 1 − η` for a large
`‖μ‖`) minus `near_optimal_margin` (0.05, fixed before the scored seeds ran) is "near-optimal".
Reported: `steps_to_fit` (the first step with 100% train accuracy), `test_accuracy_at_fit`,
`steps_to_near_optimal` (the first step whose test accuracy reaches the near-optimal level),
their difference, and the final accuracies, including the fraction of flipped training labels
still fitted. `target_met`: the fit comes first with test accuracy at most `chance_level` (0.6),
near-optimal test accuracy is reached later, and every training label is still fitted at the end.
The seed draws the training set, the test set and the initialisation.
"""

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import ConfigError, at_least, fraction, positive, section
from ..learning import xor_bayes_accuracy, xor_clusters
from ..plotting import Figure
from ._registry import register


@dataclasses.dataclass
class DataConfig:
    dim: int = at_least(2000, 2)  # d
    num_train: int = at_least(100, 1)  # n
    num_test: int = at_least(1000, 1)  # a fresh draw, per seed
    mean_norm: float = positive(12.25)  # ‖μ₁‖ = ‖μ₂‖
    label_noise: float = fraction(0.1, allow_zero=True)  # η, the label-flip probability


@dataclasses.dataclass
class NetworkConfig:
    width: int = at_least(50, 2)  # m neurons (even: half a_j = +1/√m, half −1/√m)
    init_scale: float = positive(1e-4)  # ω: w_j ~ N(0, ω² I)


@dataclasses.dataclass
class TrainConfig:
    lr: float = positive(0.01)  # the fixed gradient-descent step
    steps: int = at_least(400, 1)


@dataclasses.dataclass
class XorGrokkingConfig:
    experiment: str = "xor_grokking"
    seed: int = 0  # the training set, the test set and the initialisation
    figures: bool = True
    near_optimal_margin: float = fraction(0.05, allow_zero=True)  # below the Bayes accuracy
    chance_level: float = fraction(0.6)  # test accuracy at the fit counted as near chance
    data: DataConfig = section(DataConfig)
    network: NetworkConfig = section(NetworkConfig)
    train: TrainConfig = section(TrainConfig)


def _check(cfg: DictConfig) -> None:
    if cfg.network.width % 2:
        raise ConfigError(f"network.width={cfg.network.width} must be even (half a_j = ±1/√m)")
    if cfg.data.label_noise >= 0.5:
        raise ConfigError(f"data.label_noise={cfg.data.label_noise} must be < 0.5")


def _network(w, a, x):
    return jax.nn.relu(x @ w.T) @ a


def _first(values: np.ndarray, level: float) -> int | None:
    above = np.nonzero(values >= level)[0]
    return int(above[0]) if above.size else None


@register("xor_grokking", XorGrokkingConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Benign overfitting then grokking on noisy XOR clusters (Xu et al. 2024)."""
    d, net, t = cfg.data, cfg.network, cfg.train
    k_train, k_test, k_init = jax.random.split(jax.random.key(cfg.seed), 3)
    data = dict(dim=d.dim, mean_norm=d.mean_norm, label_noise=d.label_noise)
    x, y, y_clean = xor_clusters(d.num_train, **data, key=k_train)
    x_test, y_test, y_test_clean = xor_clusters(d.num_test, **data, key=k_test)
    half = net.width // 2
    a = jnp.concatenate([jnp.ones(half), -jnp.ones(half)]) / np.sqrt(net.width)
    w0 = net.init_scale * jax.random.normal(k_init, (net.width, d.dim))

    def loss(w):
        return jnp.mean(jax.nn.softplus(-y * _network(w, a, x)))

    def accuracies(w):
        train = jnp.sign(_network(w, a, x)) == y
        test = jnp.sign(_network(w, a, x_test))
        return {
            "train_accuracy": jnp.mean(train),
            "flipped_train_accuracy": jnp.sum(train * (y != y_clean)) / jnp.sum(y != y_clean),
            "test_accuracy": jnp.mean(test == y_test),
            "clean_test_accuracy": jnp.mean(test == y_test_clean),
        }

    @jax.jit
    def train(w):
        def step(w, _):
            w = w - t.lr * jax.grad(loss)(w)
            return w, accuracies(w) | {"loss": loss(w)}

        return jax.lax.scan(step, w, None, t.steps)

    start = time.perf_counter()
    _, history = jax.block_until_ready(train(w0))
    seconds = time.perf_counter() - start
    first = accuracies(w0) | {"loss": loss(w0)}
    curve = {k: np.concatenate([[float(first[k])], np.asarray(v)]) for k, v in history.items()}
    bayes_clean, bayes = xor_bayes_accuracy(d.mean_norm, d.label_noise)
    level = bayes - cfg.near_optimal_margin
    fit = _first(curve["train_accuracy"], 1.0)
    near = _first(curve["test_accuracy"], level)
    final = {k: float(v[-1]) for k, v in curve.items()}
    flipped = int(jnp.sum(y != y_clean))
    summary = {
        "steps_to_fit": fit,
        "test_accuracy_at_fit": None if fit is None else float(curve["test_accuracy"][fit]),
        "steps_to_near_optimal": near,
        "grokking_delay": None if None in (fit, near) else near - fit,
        "target_met": bool(
            fit is not None
            and near is not None
            and near > fit
            and curve["test_accuracy"][fit] <= cfg.chance_level
            and final["train_accuracy"] == 1.0
        ),
        "near_optimal_level": level,
        "bayes_accuracy": bayes,
        "bayes_accuracy_clean": bayes_clean,
        "final_train_accuracy": final["train_accuracy"],
        # None without flipped labels (label_noise 0 or a lucky draw)
        "final_flipped_train_accuracy": None if flipped == 0 else final["flipped_train_accuracy"],
        "final_test_accuracy": final["test_accuracy"],
        "final_clean_test_accuracy": final["clean_test_accuracy"],
        "max_test_accuracy": float(curve["test_accuracy"].max()),
        "final_train_loss": final["loss"],
        "num_flipped_train_labels": flipped,
        "train_seconds": seconds,
    }
    notes = [f"train accuracy never reached 1 in {t.steps} steps"] if fit is None else []
    if near is None:
        notes.append(f"test accuracy never reached {level:.3f} in {t.steps} steps")
    if notes:
        summary["note"] = "; ".join(notes)
    if cfg.figures:
        _figure(run_dir, curve, fit, near, level, bayes, cfg)
    return summary


def _figure(run_dir, curve, fit, near, level, bayes, cfg) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    steps = np.arange(curve["train_accuracy"].size)
    ax.plot(steps, curve["train_accuracy"], color="C0", label="train accuracy (noisy labels)")
    ax.plot(steps, curve["flipped_train_accuracy"], color="C0", ls="--", lw=1,
            label="train accuracy on the flipped labels")  # fmt: skip
    ax.plot(steps, curve["test_accuracy"], color="C1", label="test accuracy (noisy labels)")
    ax.plot(steps, curve["clean_test_accuracy"], color="C1", ls="--", lw=1,
            label="test accuracy (clean labels)")  # fmt: skip
    ax.axhline(bayes, color="k", lw=1, label=f"Bayes accuracy {bayes:.3f}")
    ax.axhline(level, color="k", lw=1, ls=":", label=f"near-optimal {level:.3f}")
    for step, color in ((fit, "C0"), (near, "C1")):
        if step is not None:
            ax.axvline(max(step, 0.5), color=color, ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, steps[-1])
    ax.set(xlabel="gradient descent step", ylabel="accuracy", ylim=(-0.02, 1.02),
           title=f"XOR clusters (d = {cfg.data.dim}, n = {cfg.data.num_train}, "
                 f"η = {cfg.data.label_noise}, m = {cfg.network.width})")  # fmt: skip
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(run_dir / "accuracy.png", dpi=120)

"""Benign oscillation of SGD with large learning rates (Lu et al. 2023, "Benign
oscillation of stochastic gradient descent with large learning rates"): the weights of a
network trained by SGD at a large learning rate oscillate, and the oscillation makes it learn a
weak feature that the smoothly converging small-learning-rate run misses.

Data (the paper's feature–noise model, in three patches of dimension `d`). A label `y = ±1`
(fair coin); patch 1 is the weak feature `y u`, in every point; patch 2 is the strong feature
`y v` in a fraction `strong_fraction` of the points and `0` in the others; patch 3 is noise
`ξ ~ N(0, σ² I)` on the `d − 2` coordinates orthogonal to `u = weak_norm e₁` and `v =
strong_norm e₂`. Test points hold the weak feature only (patch 2 is `0`, fresh noise): a
model that has not learned `u` is at chance on them.

Model. A two-layer convolutional network with `m` filters per class shared over the patches,
`f(W; x) = (1/m) Σ_r Σ_p [σ(⟨w_{+1,r}, x_p⟩) − σ(⟨w_{−1,r}, x_p⟩)]`, `σ(z) = max(0, z)^q`
(Cao, Chen, Belkin & Gu 2022's CNN), filters drawn `N(0, init_std² I)`; square loss
`(1/2n) Σ_i (f(x_i) − y_i)²`, SGD with batches of `B` (`fit`'s epoch sampling) for
`train.steps` steps at each learning rate.

Claim. With a small η the strong feature is learned and the training loss goes to zero
smoothly; the weak feature hardly moves and the points without the strong feature are fitted
by their noise. With a large η the loss oscillates and does not settle, and the weak feature is
learned, so the weak-only test points are classified. Measured per η: the feature-learning
coefficients `γ_u = ½ Σ_j max_r j ⟨w_{j,r}, u⟩ / ‖u‖` and `γ_v` likewise (every
`train.chunk` steps), the weak-only test accuracy, the mean minibatch loss over the last
quarter of training (zero when the run has settled), and whether the run diverged (then its
figures are `None`). `target_met` (fixed before seeds 0–2 were run): the largest η does not
diverge and its weak-only test accuracy exceeds the smallest η's by at least `target_gain`.

The learning rates, the data and the network were fixed from pilots at seeds 100–102 (outside
the reported seeds). With `q = 2` the oscillating band is narrow: at seed 100–102 η = 10 and 12
converge without learning `u`, η = 13–15 oscillate and learn it (more so nearer the edge), and
η ≥ 15–18 diverge. With `q = 1` (ReLU), the logistic loss or tanh filters no setting was found
in which the large-η run both oscillated stably and learned `u`.
"""

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float
from omegaconf import DictConfig

from ..config import ConfigError, at_least, fraction, positive, positive_list, section
from ..plotting import Figure
from ..train import TrainingDivergedError, fit
from ._digits_curvature import eta_key
from ._registry import register


@dataclasses.dataclass
class DataConfig:
    dim: int = at_least(100, 3)  # d, the dimension of each of the three patches
    num_train: int = at_least(100, 2)
    num_test: int = at_least(1000, 1)  # weak-feature-only test points
    weak_norm: float = positive(0.15)  # ‖u‖
    strong_norm: float = positive(1.0)  # ‖v‖
    strong_fraction: float = fraction(0.8)  # points that hold the strong feature
    noise_std: float = positive(0.3)  # σ of the noise patch


@dataclasses.dataclass
class ModelConfig:
    filters: int = at_least(10, 1)  # m filters per class
    power: float = positive(2.0)  # q in σ(z) = max(0, z)^q
    init_std: float = positive(0.1)


@dataclasses.dataclass
class TrainConfig:
    steps: int = at_least(4000, 1)
    chunk: int = at_least(100, 1)  # steps per jitted scan; coefficients and accuracy after each
    batch_size: int = at_least(20, 1)


@dataclasses.dataclass
class BenignOscillationConfig:
    experiment: str = "benign_oscillation"
    seed: int = 0  # the data, the initial filters (shared by every η) and the batches
    figures: bool = True
    learning_rates: list[float] = positive_list([1.0, 14.0], "learning rates")
    target_gain: float = positive(0.1)  # weak-only test accuracy, largest η − smallest η
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    train: TrainConfig = section(TrainConfig)


def _check(cfg: DictConfig) -> None:
    if cfg.train.batch_size > cfg.data.num_train:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be <= data.num_train="
            f"{cfg.data.num_train}"
        )
    if len(set(cfg.learning_rates)) != len(cfg.learning_rates):
        raise ConfigError(f"learning_rates={list(cfg.learning_rates)} repeats a value")


class _PatchCNN(eqx.Module):
    """`f(W; x) = (1/m) Σ_r Σ_p [σ(⟨w_{+1,r}, x_p⟩) − σ(⟨w_{−1,r}, x_p⟩)]`, `σ = relu^q`."""

    filters: Float[Array, "2 m d"]
    power: float = eqx.field(static=True)

    def __call__(self, x: Float[Array, "patches d"]) -> Float[Array, ""]:
        act = jax.nn.relu(jnp.einsum("jrd,pd->jrp", self.filters, x)) ** self.power
        return (act[0].sum() - act[1].sum()) / self.filters.shape[1]


def feature_noise_data(key, num: int, cfg: DictConfig, strong_fraction: float) -> tuple:
    """`(x, y)`: `x` of shape `(num, 3, d)` (weak feature, strong feature or 0, noise), `y`
    of shape `(num,)` in `±1`."""
    d = cfg.dim
    label_key, strong_key, noise_key = jax.random.split(key, 3)
    y = jnp.where(jax.random.bernoulli(label_key, 0.5, (num,)), 1.0, -1.0)
    u = jnp.zeros(d).at[0].set(cfg.weak_norm)
    v = jnp.zeros(d).at[1].set(cfg.strong_norm)
    has_strong = jax.random.bernoulli(strong_key, strong_fraction, (num,))
    noise = (cfg.noise_std * jax.random.normal(noise_key, (num, d))).at[:, :2].set(0.0)
    x = jnp.stack([y[:, None] * u, (has_strong * y)[:, None] * v, noise], axis=1)
    return x, y


def _coefficient(model: _PatchCNN, axis: int) -> jnp.ndarray:
    """`½ Σ_j max_r j w_{j,r}[axis]`: how far the best filter of each class has moved along
    its own class's feature (`u = e₀`-direction for `axis=0`, `v` for `axis=1`)."""
    w = model.filters[:, :, axis]
    return 0.5 * (jnp.max(w[0]) + jnp.max(-w[1]))


def _accuracy(model, x, y):
    return jnp.mean(jnp.sign(jax.vmap(model)(x)) == y)


def _train(cfg, model, train, test, eta: float, key) -> dict | None:
    """SGD at `eta`; the coefficients and accuracies every chunk and the minibatch losses, or
    `None` if the loss diverged."""

    def loss_fn(model, batch, key):
        x, y = batch
        return 0.5 * jnp.mean((jax.vmap(model)(x) - y) ** 2)

    def eval_fn(model, key):
        return {"weak": _coefficient(model, 0), "strong": _coefficient(model, 1),
                "test_accuracy": _accuracy(model, *test),
                "train_accuracy": _accuracy(model, *train)}  # fmt: skip

    try:
        result = fit(loss_fn, model, train, optax.sgd(eta), steps=cfg.train.steps,
                     batch_size=cfg.train.batch_size, key=key, chunk=cfg.train.chunk,
                     eval_fn=eval_fn, progress=False)  # fmt: skip
    except TrainingDivergedError:
        return None
    rows = result.evaluations
    history = {name: [float(r[f"validation.{name}"]) for r in rows]
               for name in ("weak", "strong", "test_accuracy", "train_accuracy")}  # fmt: skip
    history["step"] = [int(r["step"]) for r in rows]
    history["losses"] = np.asarray(result.losses, float).tolist()
    return history


def _figure(run_dir: Path, histories: dict) -> None:
    fig = Figure(figsize=(12, 3.8))
    left, middle, right = fig.subplots(1, 3)
    for i, (name, h) in enumerate(histories.items()):
        if h is None:
            continue
        losses = np.asarray(h["losses"])
        left.semilogy(np.arange(1, losses.size + 1), np.maximum(losses, 1e-12), color=f"C{i}",
                      lw=0.4, alpha=0.7, label=name)  # fmt: skip
        middle.plot(h["step"], h["weak"], color=f"C{i}", label=f"{name}: weak u")
        middle.plot(h["step"], h["strong"], color=f"C{i}", ls="--", label=f"{name}: strong v")
        right.plot(h["step"], h["test_accuracy"], color=f"C{i}", label=name)
    left.set(xlabel="step", ylabel="minibatch loss", title="large η oscillates")
    middle.set(xlabel="step", ylabel="feature coefficient γ", title="feature learning")
    right.set(xlabel="step", ylabel="accuracy", title="weak-feature-only test points")
    for ax in (left, middle, right):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "benign_oscillation.png", dpi=120)


@register("benign_oscillation", BenignOscillationConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Large-η SGD oscillates and learns the weak feature; small-η SGD does not (Lu et al.
    2023)."""
    key = jax.random.key(cfg.seed)
    train_key, test_key, init_key, fit_key = jax.random.split(key, 4)
    train = feature_noise_data(train_key, cfg.data.num_train, cfg.data, cfg.data.strong_fraction)
    test = feature_noise_data(test_key, cfg.data.num_test, cfg.data, 0.0)
    shape = (2, cfg.model.filters, cfg.data.dim)
    model = _PatchCNN(cfg.model.init_std * jax.random.normal(init_key, shape), cfg.model.power)
    etas = sorted(float(eta) for eta in cfg.learning_rates)
    histories, rows = {}, {}
    for i, eta in enumerate(etas):
        h = _train(cfg, model, train, test, eta, jax.random.fold_in(fit_key, i))
        histories[eta_key(eta)] = h
        late = None if h is None else float(np.mean(h["losses"][-(len(h["losses"]) // 4 or 1) :]))
        rows[eta_key(eta)] = {
            "learning_rate": eta,
            "diverged": h is None,
            "weak_coefficient": None if h is None else h["weak"][-1],
            "strong_coefficient": None if h is None else h["strong"][-1],
            "weak_test_accuracy": None if h is None else h["test_accuracy"][-1],
            "train_accuracy": None if h is None else h["train_accuracy"][-1],
            "late_train_loss": late,
        }
    small, large = rows[eta_key(etas[0])], rows[eta_key(etas[-1])]
    gain = (
        None
        if large["diverged"] or small["diverged"]
        else large["weak_test_accuracy"] - small["weak_test_accuracy"]
    )
    summary = {
        "weak_test_accuracy": {k: r["weak_test_accuracy"] for k, r in rows.items()},
        "weak_coefficient": {k: r["weak_coefficient"] for k, r in rows.items()},
        "late_train_loss": {k: r["late_train_loss"] for k, r in rows.items()},
        "weak_test_accuracy_gain": gain,
        "largest_eta_diverged": large["diverged"],
        "per_learning_rate": rows,
        "target_met": bool(gain is not None and gain >= cfg.target_gain),
    }
    (run_dir / "histories.json").write_text(json.dumps(histories))
    if cfg.figures:
        _figure(run_dir, histories)
    return summary

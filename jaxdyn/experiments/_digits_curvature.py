"""What the curvature and SGD-noise experiments (`edge_of_stability`, `sgd_stability`,
`sgd_noise_regimes`) share: standardised `load_digits` images with one-hot or parity targets,
the square loss on them, and summary keys for learning rates."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import ConfigError, at_least

DIGITS_SIZE = 1797  # images in load_digits


@dataclasses.dataclass
class TanhNetworkConfig:
    """The fc-tanh network `eqx.nn.MLP(64, outputs, width, depth, activation=tanh)`."""

    width: int = at_least(64, 1)  # units in every hidden layer
    depth: int = at_least(2, 1)  # tanh hidden layers


@dataclasses.dataclass
class StepsConfig:
    """The same number of steps for every run (GD and each SGD), in jitted scans of `chunk`
    steps with an evaluation after each."""

    steps: int = at_least(4000, 1)
    chunk: int = at_least(500, 1)


Digits = tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]  # images, one-hot targets, labels


def eta_key(eta: float) -> str:
    """A summary key for a learning rate without dots (dotted paths read summaries):
    `0.1 → "eta_0p1"`."""
    return "eta_" + f"{eta:g}".replace(".", "p")


def digits_train_test(num_train: int, num_test: int = 0) -> tuple[Digits, Digits]:
    """The first `num_train` `load_digits` images and the next `num_test`, each pixel
    standardised by the mean and standard deviation over the training images (a pixel
    constant on them is only centred), with one-hot targets and labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data[: num_train + num_test].astype(np.float64)
    train = x[:num_train]
    std = train.std(axis=0)
    x = (x - train.mean(axis=0)) / np.where(std > 0, std, 1.0)
    labels = data.target[: num_train + num_test].astype(np.int32)
    y = np.eye(10, dtype=np.float32)[labels]

    def part(s):
        return jnp.asarray(x[s], jnp.float32), jnp.asarray(y[s]), jnp.asarray(labels[s])

    return part(slice(0, num_train)), part(slice(num_train, num_train + num_test))


def standardised_digits(num_samples: int) -> Digits:
    """The first `num_samples` `load_digits` images, each pixel standardised over them (a
    constant pixel stays 0), their one-hot targets and labels."""
    return digits_train_test(num_samples)[0]


def parity_digits(num_train: int, num_test: int) -> tuple[tuple, tuple]:
    """`digits_train_test`'s images with the scalar target `y = +1` for an even digit and `−1`
    for an odd one (shape `(N, 1)`)."""

    def parity(part):
        x, _, labels = part
        y = (1.0 - 2.0 * (labels % 2)).astype(jnp.float32)[:, None]
        return x, y

    return tuple(parity(part) for part in digits_train_test(num_train, num_test))


def square_loss(model: eqx.Module, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """`L = (1/2N) Σ_i ‖f(x_i) − y_i‖²`."""
    return 0.5 * jnp.sum((jax.vmap(model)(x) - y) ** 2) / x.shape[0]


def parity_scores(model: eqx.Module, x: jnp.ndarray, y: jnp.ndarray) -> dict:
    """The square loss and the accuracy of `sign f(x)` against `±1` targets `y` `(N, 1)`."""
    out = jax.vmap(model)(x)
    return {"loss": 0.5 * jnp.sum((out - y) ** 2) / x.shape[0],
            "accuracy": jnp.mean(jnp.sign(out) == y)}  # fmt: skip


def check_split_and_batches(cfg: DictConfig, *, full_batch: bool) -> None:
    """`cfg.num_train + cfg.num_test` images fit in `load_digits`, and `cfg.batch_sizes` are
    distinct integers in `[1, num_train]` (`[1, num_train)` without `full_batch`)."""
    if cfg.num_train + cfg.num_test > DIGITS_SIZE:
        raise ConfigError(
            f"num_train={cfg.num_train} + num_test={cfg.num_test} must be <= {DIGITS_SIZE} "
            "(load_digits)"
        )
    sizes, top = list(cfg.batch_sizes), cfg.num_train + int(full_batch)
    if not sizes or any(not isinstance(b, int) or not 1 <= b < top for b in sizes):
        bracket = "]" if full_batch else ")"
        why = "num_train itself: full-batch GD" if full_batch else "GD, the full batch, always runs"
        bounds = f"[1, num_train={cfg.num_train}{bracket}"
        raise ConfigError(f"batch_sizes={sizes} must be integers in {bounds} ({why})")
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"batch_sizes={sizes} repeats a value")

"""What the curvature experiments (`edge_of_stability`, `sgd_stability`) share: standardised
`load_digits` images with one-hot targets, the square loss on them, and summary keys for
learning rates."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

DIGITS_SIZE = 1797  # images in load_digits

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


def square_loss(model: eqx.Module, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """`L = (1/2N) Σ_i ‖f(x_i) − y_i‖²`."""
    return 0.5 * jnp.sum((jax.vmap(model)(x) - y) ** 2) / x.shape[0]

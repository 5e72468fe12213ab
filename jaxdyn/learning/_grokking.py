"""The two-layer quadratic network on which modular arithmetic is grokked (Gromov 2023,
"Grokking modular arithmetic", arXiv:2301.02679; Kumar et al. 2024, "Grokking as the
transition from lazy to rich training dynamics"), in Gromov's mean-field parameterisation,
and its data set: every pair `(n, m) ∈ Z_p²` one-hot encoded, labelled `(n + m) mod p`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import check_count, check_key

__all__ = ["QuadraticNetwork", "modular_addition"]


class QuadraticNetwork(eqx.Module):
    r"""`f(x) = (1/N) W₂ ((1/√D) W₁ x)²` (the square entrywise), with `W₁: N × D`,
    `W₂: p × N` and every entry drawn from `N(0, 1)` (Gromov 2023's network, in the
    mean-field scaling of a public replication of his baseline experiments: `1/√D` on the
    first layer, `1/N` on the readout; no biases).

    On one-hot pairs `x = [e_n, e_m]` (`D = 2p`) the hidden pre-activation is
    `(W₁[:, n] + W₁[:, p + m]) / √(2p)`; Gromov's analytic solution sets each neuron's two
    columns to cosines of one frequency (Gromov reports trained networks near it; not
    measured here).

    **Arguments:** `inputs` (`D`), `hidden` (`N`), `outputs` (`p`), `key`.
    """

    w1: Float[Array, "hidden inputs"]
    w2: Float[Array, "outputs hidden"]

    def __init__(self, inputs: int, hidden: int, outputs: int, *, key: PRNGKeyArray):
        check_count("inputs", inputs)
        check_count("hidden", hidden)
        check_count("outputs", outputs)
        check_key(key, "QuadraticNetwork")
        k1, k2 = jax.random.split(key)
        self.w1 = jax.random.normal(k1, (hidden, inputs))
        self.w2 = jax.random.normal(k2, (outputs, hidden))

    def __call__(self, x: Float[Array, " inputs"]) -> Float[Array, " outputs"]:
        hidden = self.w1 @ x / jnp.sqrt(self.w1.shape[1])
        return self.w2 @ hidden**2 / self.w1.shape[0]


def modular_addition(p: int) -> tuple[Float[Array, "p*p 2*p"], Int[Array, " p*p"]]:
    """All `p²` pairs `(n, m)`, `n` major: inputs `[e_n, e_m] ∈ {0, 1}^{2p}` and labels
    `(n + m) mod p`."""
    check_count("p", p)
    n, m = jnp.divmod(jnp.arange(p * p), p)
    eye = jnp.eye(p)
    return jnp.concatenate([eye[n], eye[m]], axis=1), (n + m) % p

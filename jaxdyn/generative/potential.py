"""A conservative score model: the gradient of a learned scalar potential (Deveney, Stanczuk,
Kreusser, Budd & Schönlieb 2023).

`PotentialScore` is `s_θ(t, x) = ∇_x φ_θ(t, x)` with `φ_θ` a scalar MLP of `(t, x)`: an
unnormalised log-density `log p_t(x) ≈ φ_θ(t, x) + c`, `c` a constant (the residual below
picks up `c′(t)` otherwise). Its score is curl-free by construction (its Jacobian is the
Hessian of `φ_θ`, symmetric), as every true score is, and
`φ_θ` itself can be held to the log-density Fokker–Planck equation
(`jaxdyn.generative.log_density_residual`), as in the paper's experiments (a 3 × 80 network
with `Softplus(β = 100)` activations).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from ..models import ACTIVATIONS

__all__ = ["PotentialScore"]


class _Sharpened(eqx.Module):
    """`σ(β x)/β`: `softplus` with `β = 100` is PyTorch's `Softplus(beta=100)`."""

    activation: str = eqx.field(static=True)
    sharpness: float = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        return ACTIVATIONS[self.activation](self.sharpness * x) / self.sharpness


class PotentialScore(eqx.Module):
    """`s(t, x) = ∇_x φ(t, x)`, `φ` an MLP `(t, x) ↦ ℝ` of `depth` hidden layers of `width`
    with the activation `x ↦ act(β x)/β` (`sharpness` β; smooth activations only: the
    Fokker–Planck residual differentiates `φ` twice in `x` and then in the parameters).

    `potential(t, x)` is `φ`; calling the module gives the score, a field `(t, x, args)` for
    one sample `x` of shape `(dim,)` as the samplers and losses expect."""

    net: eqx.nn.MLP
    dim: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        *,
        activation: str = "softplus",
        sharpness: float = 1.0,
        key: PRNGKeyArray,
    ):
        if activation not in ACTIVATIONS or activation == "relu":
            smooth = sorted(a for a in ACTIVATIONS if a != "relu")
            raise ValueError(f"activation must be one of {smooth}; got {activation!r}")
        if not sharpness > 0:
            raise ValueError(f"sharpness must be positive; got {sharpness!r}")
        self.dim = int(dim)
        self.net = eqx.nn.MLP(
            dim + 1, "scalar", width, depth, activation=_Sharpened(activation, float(sharpness)),
            key=key,
        )  # fmt: skip

    def potential(self, t: ArrayLike, x: Float[Array, " dim"], args: Any = None) -> Scalar:
        """`φ(t, x)`, the unnormalised log-density."""
        t = jnp.asarray(t, dtype=x.dtype)
        return self.net(jnp.concatenate([t[None], x]))

    def __call__(self, t: ArrayLike, x: Float[Array, " dim"], args: Any = None) -> Array:
        return jax.grad(lambda y: self.potential(t, y))(x)

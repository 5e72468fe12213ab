"""The energy of a hidden node in the Li₂ framework of grokking (Tian 2025, "Provable scaling
laws of feature emergence from learning dynamics of grokking", arXiv:2509.21519), and how
closely a network's actual first-layer gradient follows its ascent.

Setting. A two-layer network `Ŷ = F V`, `F = σ(X W)` (inputs `X: n × d`, hidden weights
`W = [w_1 … w_K]`, readout `V: K × c`), trained on targets `Y: n × c` by the centred squared
loss `ℓ = ½ ‖P⊥(Y − F V)‖²_F` (`P⊥ = I − 11ᵀ/n`) with weight decay `η` on `V`. The
*backpropagated gradient* is `G_F = −∂ℓ/∂F = P⊥(Y − F V) Vᵀ`, and node `j` moves by
`ẇ_j = Xᵀ(σ'(X w_j) ⊙ g_j)`, `g_j` the column `j` of `G_F`. Tian's three stages:

- I, lazy: `V` fits the random hidden features `F` while `W` stays near its initialisation;
  `G_F` is random.
- II, independent feature learning: with `V` at its ridge solution `(F̃ᵀF̃ + ηI)⁻¹F̃ᵀỸ`
  (`F̃ = P⊥F`, `Ỹ = P⊥Y`), `G_F = η (F̃F̃ᵀ + ηI)⁻¹ ỸỸᵀ F̃ (F̃ᵀF̃ + ηI)⁻¹`, which is
  proportional to `ỸỸᵀ F̃` when `F̃F̃ᵀ` is negligible against `ηI` (or `F̃ᵀF̃ ≈ cI`, i.e.
  `F̃F̃ᵀ ≈ c P⊥` on the centred subspace). Column `j` then depends on node `j` alone, and
  its dynamics is the gradient ascent `ẇ_j ∝ ∇E(w_j)` of the energy

      E(w) = ½ ‖Ỹᵀ σ(X w)‖²,

  whose local maxima on the sphere `‖w‖ = 1` are the emerging features (for modular addition
  with `σ(x) = x²`: a single Fourier frequency of `Z_p` in each half of `w`, `E = p/4` on all
  `p²` pairs).
- III, interactive feature learning: the nodes' features make `F̃F̃ᵀ` structured, `G_F`
  leaves the independent form (it turns to the features still missing), and the nodes'
  gradients no longer follow their own energies.

`li2_energy` is `E`; `li2_gradient_alignment` the cosine between each node's actual descent
direction and `∇E(w_j)` (1 in stage II, near 0 for random `G_F`), the measure by which the
experiment `grokking_modular` dates the stages.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["li2_energy", "li2_gradient_alignment"]


def li2_energy(
    w: Float[ArrayLike, "*nodes d"],
    x: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, "n c"],
    activation: Callable[[Array], Array] = jnp.square,
) -> Float[Array, "*nodes"]:
    """Tian 2025's energy of one hidden node, `E(w) = ½ ‖Ỹᵀ σ(X w)‖²` with `Ỹ = P⊥Y` the
    targets centred over the `n` samples (so `ỸᵀP⊥ = Ỹᵀ`: the activation needs no centring).
    Its gradient ascent is the node's independent dynamics in stage II of Li₂
    (arXiv:2509.21519): `Xᵀ(σ'(Xw) ⊙ ỸỸᵀσ(Xw))`.

    **Arguments:** `w` (`d`, or `nodes × d`: one energy per row), the node's incoming
    weights; `x` (`n × d`), the inputs; `y` (`n × c`), the targets (centred here);
    `activation`, elementwise `σ` (default `x²`, the paper's and Gromov's quadratic).
    Jittable and differentiable in `w`.
    """
    w, x, y = jnp.asarray(w), jnp.asarray(x), jnp.asarray(y)
    if w.ndim < 1 or x.ndim != 2 or y.ndim != 2 or x.shape[1] != w.shape[-1]:
        raise ValueError(
            f"li2_energy: need w (..., d), x (n, d), y (n, c); got w {w.shape}, x {x.shape}, "
            f"y {y.shape}"
        )
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"li2_energy: x has {x.shape[0]} samples, y {y.shape[0]}")
    centred = y - jnp.mean(y, axis=0)
    return 0.5 * jnp.sum((activation(w @ x.T) @ centred) ** 2, axis=-1)


def li2_gradient_alignment(
    w: Float[ArrayLike, "k d"],
    descent: Float[ArrayLike, "k d"],
    x: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, "n c"],
    activation: Callable[[Array], Array] = jnp.square,
) -> Float[Array, " k"]:
    """Per hidden node `j`, the cosine between its actual descent direction (e.g. `−∂L/∂w_j`
    of the training loss) and the ascent direction of its own energy, `∇E(w_j)`
    (`li2_energy`): 1 when the node moves independently along its energy (Li₂'s stage II;
    Tian 2025, arXiv:2509.21519), near 0 when the backpropagated gradient is random (stage I)
    or shaped by the other nodes (stage III). A node whose descent or energy gradient is
    exactly zero gets 0.

    **Arguments:** `w` (`k × d`), the hidden weights, one row a node; `descent` (`k × d`), the
    rows' actual update directions; `x`, `y`, `activation` as for `li2_energy`.
    """
    w, descent = jnp.asarray(w), jnp.asarray(descent)
    if w.ndim != 2 or descent.shape != w.shape:
        raise ValueError(
            f"li2_gradient_alignment: need w and descent of one shape (k, d); got w {w.shape}, "
            f"descent {descent.shape}"
        )
    # the rows' energies are independent: the gradient of their sum holds each row's own
    ascent = jax.grad(lambda w: jnp.sum(li2_energy(w, x, y, activation)))(w)
    dot = jnp.sum(ascent * descent, axis=1)
    norms = jnp.linalg.norm(ascent, axis=1) * jnp.linalg.norm(descent, axis=1)
    return jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)

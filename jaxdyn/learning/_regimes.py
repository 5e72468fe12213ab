"""Measures of lazy and rich training: how far the kernel and the weights moved, how well the
kernel and the features align with the task, and the effective rank of weights and kernels.

All are jittable, so they can be tracked during `jaxdyn.fit` through its `eval_fn`, e.g. with
`k0 = empirical_ntk(model, x)`:

    def eval_fn(model, key):
        k = empirical_ntk(model, x)
        return {"ntk_change": ntk_change(k, k0), "alignment": kernel_alignment(k, y),
                "weight_change": weight_change(model, model0)}
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

from ._alpha import AlphaScaled

__all__ = [
    "effective_rank",
    "feature_alignment",
    "kernel_alignment",
    "ntk_change",
    "weight_change",
]


def ntk_change(kernel: Float[ArrayLike, "n n"], initial: Float[ArrayLike, "n n"]) -> Scalar:
    """The relative change of a kernel, `‖K_t − K₀‖_F / ‖K₀‖_F`: near 0 throughout lazy
    training (the kernel stays its initial value; Jacot et al. 2018, Chizat et al. 2019),
    order one when features are learnt (rich training)."""
    kernel, initial = jnp.asarray(kernel), jnp.asarray(initial)
    if kernel.shape != initial.shape:
        raise ValueError(f"ntk_change: kernel {kernel.shape} and initial {initial.shape} differ")
    return jnp.linalg.norm(kernel - initial) / jnp.linalg.norm(initial)


def kernel_alignment(
    kernel: Float[ArrayLike, "n n"], targets: Float[ArrayLike, " n"] | Float[ArrayLike, "n k"]
) -> Scalar:
    """The centred kernel–target alignment (Cortes, Mohri & Rostamizadeh 2012),

        A(K, y) = ⟨K_c, y_c y_cᵀ⟩_F / (‖K_c‖_F ‖y_c y_cᵀ‖_F) = y_cᵀ K y_c / (‖K_c‖_F ‖y_c‖²),

    with `K_c = H K H`, `y_c = H y` and `H = I − 11ᵀ/n` the centring matrix (for targets
    `(n, k)`, `y yᵀ` is `Y Yᵀ`): the cosine between the centred kernel and the ideal kernel
    of the targets, in `[−1, 1]`; 1 for `K = y yᵀ`. Kernel-task alignment is what makes
    kernel regression with few samples generalise (Kumar et al. 2024 track it for the NTK).
    Undefined (NaN) when the centred targets or the centred kernel vanish, e.g. for constant
    targets, which no kernel can align with."""
    kernel = jnp.asarray(kernel)
    targets = jnp.asarray(targets)
    if targets.ndim == 1:
        targets = targets[:, None]
    n = kernel.shape[0]
    if kernel.shape != (n, n) or targets.ndim != 2 or targets.shape[0] != n:
        raise ValueError(
            f"kernel_alignment: kernel must be (n, n) and targets (n,) or (n, k), got "
            f"{kernel.shape} and {jnp.shape(targets)}"
        )
    centred = kernel - kernel.mean(0) - kernel.mean(1)[:, None] + kernel.mean()
    y = targets - targets.mean(0)
    ideal = y @ y.T
    return jnp.sum(centred * ideal) / (jnp.linalg.norm(centred) * jnp.linalg.norm(ideal))


def _parameters(model) -> list[Array]:
    if isinstance(model, AlphaScaled):
        model = model.model
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


def weight_change(model: eqx.Module, initial: eqx.Module) -> Scalar:
    """The relative change of all the floating-point arrays of a model, `‖w − w₀‖ / ‖w₀‖`
    (every leaf flattened into one vector), between two models of the same structure. Of an
    `AlphaScaled` model only the trained copy counts (`.model`, not the frozen one).
    Weights move `O(1/α)` in lazy training (Chizat et al. 2019)."""
    now, then = _parameters(model), _parameters(initial)
    if [jnp.shape(a) for a in now] != [jnp.shape(b) for b in then]:
        raise ValueError("weight_change: the two models' arrays differ in number or shape")
    moved = sum(jnp.sum((a - b) ** 2) for a, b in zip(now, then, strict=True))
    size = sum(jnp.sum(b**2) for b in then)
    return jnp.sqrt(moved / size)


def effective_rank(matrix: Float[ArrayLike, "m n"]) -> Scalar:
    """The entropy effective rank of Roy & Vetterli 2007, `exp(−Σᵢ pᵢ log pᵢ)` with
    `pᵢ = σᵢ / Σⱼ σⱼ` the normalised singular values (eigenvalues, for a kernel): between 1
    (rank one) and `min(m, n)` (all singular values equal; `n` for the `n × n` identity).
    Rich training of a low-rank task lowers the effective rank of the weights and kernel."""
    matrix = jnp.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"effective_rank: needs a matrix, got shape {matrix.shape}")
    s = jnp.linalg.svd(matrix, compute_uv=False)
    p = s / jnp.sum(s)
    safe = jnp.where(p > 0, p, 1.0)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0.0)))


def feature_alignment(
    weights: Float[ArrayLike, "hidden inputs"], direction: Float[ArrayLike, " inputs"]
) -> Scalar:
    """How much the first-layer features point along a teacher direction `β`:

        ‖W β̂‖² / ‖W‖₂² = β̂ᵀ WᵀW β̂ / λ_max(WᵀW),   β̂ = β / ‖β‖,

    in `[0, 1]`, 1 when `β` is a top right singular vector of `W` (e.g. for the task
    `y = (β·x)²/2` of Kumar et al. 2024, learnt by a spike `WᵀW ∝ ββᵀ`). For Gaussian
    `W: N × D` at initialisation it is about `1 / (1 + √(D/N))²`."""
    weights, direction = jnp.asarray(weights), jnp.asarray(direction)
    if weights.ndim != 2 or direction.shape != weights.shape[1:]:
        raise ValueError(
            f"feature_alignment: weights must be (hidden, inputs) and direction (inputs,), "
            f"got {weights.shape} and {direction.shape}"
        )
    unit = direction / jnp.linalg.norm(direction)
    return jnp.sum((weights @ unit) ** 2) / jnp.linalg.norm(weights, ord=2) ** 2

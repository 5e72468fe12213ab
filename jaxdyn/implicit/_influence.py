"""Influence functions: how up-weighting one training point changes a test loss, through an
inverse-Hessian-vector product (Koh & Liang 2017), computed exactly, by conjugate gradients,
by LiSSA (Agarwal, Bullins & Hazan 2017), or for MLPs by an eigenvalue-corrected
Kronecker-factored (EK-FAC) curvature (George et al. 2018; Grosse et al. 2023).

With the training objective `R(θ) = (1/n) Σᵢ ℓ(θ, zᵢ)` minimised at `θ̂`, the test loss
`L(θ) = (1/m) Σⱼ ℓ_test(θ, z'ⱼ)` and `H = ∇²R(θ̂)`, the influence of up-weighting `z` is

    I(z) = d/dε L(argmin_θ R(θ) + ε ℓ(θ, z)) |_{ε=0} = -∇L(θ̂)ᵀ (H + δI)⁻¹ ∇ℓ(θ̂, z),

and removing `zᵢ` (`ε = -1/n`) changes the test loss by about `-I(zᵢ)/n`.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Key, PyTree, Scalar

from .._checks import OnFailure, check_choice, check_count, check_on_failure, check_positive
from .._solvers import apply_on_failure
from .._trees import shapes, tree_norm

__all__ = [
    "EXACT_MAX_PARAMS",
    "INFLUENCE_SOLVERS",
    "ekfac_influence",
    "influence",
    "leave_one_out_change",
]

INFLUENCE_SOLVERS = ("exact", "cg", "lissa")

# The dense Hessian of `solver="exact"` holds p² numbers: 5000 parameters are 200 MB in float64.
EXACT_MAX_PARAMS = 5000

# CG's result is accepted when its true relative residual |(H + δI)s - v| / |v| is at most this
# (as the implicit solvers check their linear systems): it catches an indefinite Hessian or too
# few iterations, not a missed `tol`.
_CG_CHECK = 1e-3


def _num_samples(name: str, data: PyTree) -> int:
    """The common leading (sample) axis of every leaf of `data`."""
    leaves = jax.tree.leaves(data)
    if not leaves or not all(hasattr(x, "shape") and jnp.ndim(x) >= 1 for x in leaves):
        raise ValueError(
            f"{name} must be a pytree of arrays with a leading sample axis (for one example "
            f"use x[None]); got shapes {shapes(data)}"
        )
    sizes = {x.shape[0] for x in leaves}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"every leaf of {name} must have the same, non-zero number of samples on its "
            f"leading axis; got shapes {shapes(data)}"
        )
    return sizes.pop()


def _check_scalar_loss(name: str, fn: Callable, *example: Any) -> None:
    try:
        value = eqx.filter_eval_shape(fn, *example)
    except Exception as error:
        raise ValueError(
            f"{name} could not be evaluated on one example (inputs of shapes "
            f"{shapes(example)}): {error}"
        ) from error
    if not (hasattr(value, "shape") and value.shape == ()):
        raise ValueError(f"{name} must return a scalar per example; got {shapes(value)}")


def _check_non_negative(name: str, value: Any) -> None:
    if isinstance(value, int | float) and not value >= 0:
        raise ValueError(f"{name} must be >= 0; got {value}")


def _first(data: PyTree) -> PyTree:
    return jax.tree.map(lambda x: x[0], data)


def leave_one_out_change(scores: Float[Array, " n_train"]) -> Float[Array, " n_train"]:
    """The predicted change of the test loss when training point `i` is removed and the model
    retrained, `L(θ̂₋ᵢ) - L(θ̂) ≈ -I(zᵢ)/n`, from the influence scores `I` of `influence` or
    `ekfac_influence` (removal is up-weighting by `ε = -1/n`; Koh & Liang 2017, eq. 2).

    A positive influence `I(zᵢ)` (up-weighting `zᵢ` raises the test loss) means that removing
    `zᵢ` lowers it.
    """
    scores = jnp.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (n_train,); got {scores.shape}")
    return -scores / scores.shape[0]


def influence(
    loss_fn: Callable[[PyTree, PyTree], Scalar],
    params: PyTree,
    train_data: PyTree,
    test_data: PyTree,
    *,
    solver: str = "exact",
    test_loss_fn: Callable[[PyTree, PyTree], Scalar] | None = None,
    damping: float = 0.0,
    tol: float = 1e-10,
    max_steps: int | None = None,
    lissa_depth: int = 1000,
    lissa_scale: float = 10.0,
    lissa_batch_size: int = 16,
    lissa_repeats: int = 1,
    key: Key[Array, ""] | None = None,
    on_failure: OnFailure = "raise",
) -> Float[Array, " n_train"]:
    """Influence of up-weighting each training point on the mean test loss (Koh & Liang 2017,
    "Understanding Black-box Predictions via Influence Functions"):

        I(zᵢ) = -∇L(θ̂)ᵀ (H + δI)⁻¹ ∇ℓ(θ̂, zᵢ),   H = ∇²R(θ̂),   R(θ) = (1/n) Σᵢ ℓ(θ, zᵢ),

    with `L(θ) = (1/m) Σⱼ ℓ_test(θ, z'ⱼ)`. The vector `s = (H + δI)⁻¹∇L` is computed once and
    `∇ℓ(θ̂, zᵢ)ᵀs` is a forward-mode derivative per training point (no per-example gradients
    are stored). **Sign convention:** `I(zᵢ) > 0` means up-weighting `zᵢ` raises the test loss;
    removing `zᵢ` changes it by about `-I(zᵢ)/n` (`leave_one_out_change`).

    `params` must minimise `R` (the derivation assumes `∇R(θ̂) = 0` and `H` positive definite).
    Put any regulariser inside `loss_fn` (e.g. `+ λ/2 ‖θ‖²`): it is then part of every `ℓ`, and
    leave-one-out retraining minimises the mean over the other `n - 1` points, regulariser
    included, the convention under which `-I(zᵢ)/n` is the first-order change.

    **Arguments:**

    - `loss_fn(params, example) -> scalar`: the training loss of one example.
    - `params`: a pytree (e.g. an `eqx.Module`); its floating-point arrays are the parameters
      `θ` (flattened with `ravel_pytree`), other leaves are held fixed.
    - `train_data`, `test_data`: pytrees of arrays with a leading sample axis (`n` and `m`).
    - `solver`: how `(H + δI)⁻¹∇L` is computed:
        - `"exact"`: the dense Hessian and its Cholesky factorisation (at most
          `EXACT_MAX_PARAMS` parameters);
        - `"cg"`: conjugate gradients on Hessian-vector products (`jvp` of `grad`), stopping
          at relative residual `tol` or after `max_steps` iterations (`None`: 10p, SciPy's
          and JAX's default for `p` parameters); `tol` and `max_steps` apply to `cg` only;
        - `"lissa"`: the stochastic recursion of Agarwal, Bullins & Hazan 2017,
          `h₀ = v`, `hₖ = v + (I - (H_{Bₖ} + δI)/s) hₖ₋₁`, `(H + δI)⁻¹v ≈ h_T/s`, with `H_{Bₖ}`
          the Hessian of the mean loss on `lissa_batch_size` points drawn with replacement,
          `T = lissa_depth`, `s = lissa_scale`, averaged over `lissa_repeats` runs. It needs
          `key`, and `s` above the largest eigenvalue of every `H_{Bₖ} + δI` (else it
          diverges); its bias decays like `(1 - λ_min/s)^T`.
    - `test_loss_fn(params, example) -> scalar`: the test loss of one example (default
      `loss_fn`; pass one without the regulariser to study the data loss alone).
    - `damping`: `δ ≥ 0` added to the Hessian's diagonal (for non-convex models).
    - `on_failure`: a Hessian that is not positive definite (`exact`), a CG solve whose
      relative residual exceeds 1e-3, or a non-finite LiSSA estimate `raise` an error, give
      NaN scores (`"nan"`), or are returned as computed (`"return"`).

    The computation is jit-compiled with the functions and settings (`solver`, `damping`,
    `tol`, ...) static, so calls that repeat them reuse the compile; it can also run inside
    `jax.jit` (with `key` traced).

    **Returns:** `I`, shape `(n,)`.
    """
    check_choice("solver", solver, INFLUENCE_SOLVERS)
    check_on_failure(on_failure)
    if max_steps is not None:
        check_count("max_steps", max_steps)
    for name, value in (("damping", damping), ("tol", tol)):
        _check_non_negative(name, value)
    test_loss_fn = loss_fn if test_loss_fn is None else test_loss_fn
    _num_samples("train_data", train_data)
    _num_samples("test_data", test_data)
    _check_scalar_loss("loss_fn(params, example)", loss_fn, params, _first(train_data))
    _check_scalar_loss("test_loss_fn(params, example)", test_loss_fn, params, _first(test_data))
    num_params = sum(x.size for x in jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array)))
    if num_params == 0:
        raise ValueError(f"params has no floating-point arrays; got {shapes(params)}")
    if solver == "exact" and num_params > EXACT_MAX_PARAMS:
        raise ValueError(
            f"solver='exact' builds the dense {num_params}x{num_params} Hessian; params has "
            f"{num_params} > EXACT_MAX_PARAMS={EXACT_MAX_PARAMS} parameters: use solver='cg' "
            "or 'lissa'"
        )
    if solver == "lissa":
        if key is None:
            raise ValueError("solver='lissa' is stochastic and needs key= (a jax.random key)")
        for name, value in (("lissa_depth", lissa_depth), ("lissa_batch_size", lissa_batch_size),
                            ("lissa_repeats", lissa_repeats)):  # fmt: skip
            check_count(name, value)
        check_positive("lissa_scale", lissa_scale)
    return _influence(
        loss_fn, test_loss_fn, params, train_data, test_data, key,
        solver=solver, damping=damping, tol=tol, max_steps=max_steps,
        lissa_depth=lissa_depth, lissa_scale=lissa_scale, lissa_batch_size=lissa_batch_size,
        lissa_repeats=lissa_repeats, on_failure=on_failure,
    )  # fmt: skip


def _hvp(objective: Callable, x: Array, v: Array) -> Array:
    """`∇²f(x) v` as the forward-mode derivative of the gradient."""
    return jax.jvp(jax.grad(objective), (x,), (v,))[1]


@eqx.filter_jit
def _influence(
    loss_fn, test_loss_fn, params, train_data, test_data, key, *, solver, damping, tol,
    max_steps, lissa_depth, lissa_scale, lissa_batch_size, lissa_repeats, on_failure,
):  # fmt: skip
    dynamic, static = eqx.partition(params, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(dynamic)

    def per_example(fn, theta, example):
        return fn(eqx.combine(unravel(theta), static), example)

    def mean_loss(fn, data):
        return lambda theta: jnp.mean(jax.vmap(lambda z: per_example(fn, theta, z))(data))

    train_objective = mean_loss(loss_fn, train_data)
    v = jax.grad(mean_loss(test_loss_fn, test_data))(flat)

    if solver == "exact":
        hessian = jax.hessian(train_objective)(flat)
        hessian = hessian + damping * jnp.eye(flat.size, dtype=hessian.dtype)
        factor = jnp.linalg.cholesky(hessian)  # NaN unless positive definite
        s = jax.scipy.linalg.cho_solve((factor, True), v)
        failed = ~jnp.all(jnp.isfinite(s))
        message = (
            "influence: the Hessian of the mean training loss (plus damping) is not positive "
            "definite at params: params may not minimise it (train further) or the model is "
            "non-convex (add damping=)"
        )
    elif solver == "cg":

        def matvec(u):
            return _hvp(train_objective, flat, u) + damping * u

        s, _ = jax.scipy.sparse.linalg.cg(matvec, v, tol=tol, maxiter=max_steps)
        scale = tree_norm(v) + jnp.finfo(v.dtype).tiny
        failed = ~(tree_norm(matvec(s) - v) <= _CG_CHECK * scale)  # NaN counts as failed
        message = (
            f"influence: conjugate gradients did not solve (H + damping I) s = grad L to a "
            f"relative residual of {_CG_CHECK}: the Hessian may be indefinite (params not a "
            "minimum, or a non-convex model: add damping=) or max_steps too small"
        )
    else:
        n = jax.tree.leaves(train_data)[0].shape[0]

        def estimate(key):
            def step(h, key):
                index = jax.random.randint(key, (lissa_batch_size,), 0, n)
                batch = jax.tree.map(lambda x: x[index], train_data)
                curvature = _hvp(mean_loss(loss_fn, batch), flat, h) + damping * h
                return v + h - curvature / lissa_scale, None

            h, _ = jax.lax.scan(step, v, jax.random.split(key, lissa_depth))
            return h / lissa_scale

        s = jnp.mean(jax.vmap(estimate)(jax.random.split(key, lissa_repeats)), axis=0)
        failed = ~jnp.all(jnp.isfinite(s))
        message = (
            "influence: the LiSSA recursion diverged: lissa_scale must exceed the largest "
            "eigenvalue of every mini-batch Hessian plus damping; raise lissa_scale (and "
            "lissa_depth with it)"
        )

    def directional(example):  # ∇ℓ(θ̂, z)ᵀ s
        return jax.jvp(lambda theta: per_example(loss_fn, theta, example), (flat,), (s,))[1]

    scores = -jax.vmap(directional)(train_data)
    return apply_on_failure(scores, failed, on_failure, message)


# --- EK-FAC for MLPs -------------------------------------------------------------------------


def _mlp_layers(mlp: eqx.nn.MLP) -> list[eqx.nn.Linear]:
    """The Linear layers of `mlp` in order (a scanned MLP's stacked hidden layers unstacked)."""
    if not mlp.scan or len(mlp.layers) == 1:
        return list(mlp.layers)
    first, hidden, last = mlp.layers
    unstacked = [jax.tree.map(lambda x, i=i: x[i], hidden) for i in range(mlp.depth - 1)]
    return [first, *unstacked, last]


def _mlp_forward(mlp: eqx.nn.MLP, layers, shifts, x):
    """`mlp(x)` as `eqx.nn.MLP.__call__` computes it, with `shifts[l]` added to the
    pre-activation `s_l = W_l a_l + b_l` of layer `l`; also returns the layer inputs `a_l`
    (with a 1 appended where the layer has a bias)."""
    inputs = []
    a = x
    for index, (layer, shift) in enumerate(zip(layers, shifts, strict=True)):
        a = jnp.reshape(a, (-1,))
        s = layer.weight @ a + shift
        if layer.bias is not None:
            s = s + layer.bias
            a = jnp.concatenate([a, jnp.ones((1,), a.dtype)])
        inputs.append(a)
        if index < len(layers) - 1:
            activation = jax.tree.map(
                lambda p, i=index: p[i] if eqx.is_array(p) else p, mlp.activation
            )
            a = eqx.filter_vmap(lambda f, u: f(u))(activation, s)
        else:
            a = s
    if layers[-1].out_features == "scalar":
        a = a[0]
    if mlp.depth == 0:  # eqx.nn.MLP returns the only layer's output without final_activation
        return a, inputs
    if mlp.out_size == "scalar":
        return mlp.final_activation(a), inputs
    return eqx.filter_vmap(lambda f, u: f(u))(mlp.final_activation, a), inputs


def ekfac_influence(
    mlp: eqx.nn.MLP,
    loss_fn: Callable[[Array, PyTree], Scalar],
    train_data: tuple[Array, PyTree],
    test_data: tuple[Array, PyTree],
    *,
    damping: float = 0.0,
    weight_decay: float = 0.0,
    on_failure: OnFailure = "raise",
) -> Float[Array, " n_train"]:
    """Influence scores as in `influence`, with the Hessian of an `eqx.nn.MLP` replaced by an
    eigenvalue-corrected Kronecker-factored (EK-FAC) approximation of its Gauss-Newton matrix
    (George et al. 2018, "Fast Approximate Natural Gradient Descent in a Kronecker-factored
    Eigenbasis"; Grosse et al. 2023, "Studying Large Language Model Generalization with
    Influence Functions").

    The training objective is `R(θ) = (1/n) Σᵢ loss_fn(mlp(xᵢ), yᵢ) + (weight_decay/2) ‖θ‖²`
    over the weights and biases `θ` of the MLP's Linear layers, and the test loss the mean of
    `loss_fn` on `test_data`. For layer `l` with input `a` (a 1 appended for its bias) and
    pre-activation `s = W a + b`, the Gauss-Newton block is approximated by

        G_l ≈ (Q_A ⊗ Q_S) diag(Λ) (Q_A ⊗ Q_S)ᵀ,   A = E[a aᵀ] = Q_A Λ_A Q_Aᵀ,
        S = E[Σ_k g_k g_kᵀ] = Q_S Λ_S Q_Sᵀ,   Λ = E[Σ_k (Q_Sᵀ g_k)² ((Q_Aᵀ a)²)ᵀ],

    where `g_k = J_sᵀ r_k` are the pre-activation "gradients" of the columns `r_k` of a square
    root `R Rᵀ = ∇²_f loss_fn` of the output Hessian: the expectation over labels drawn from
    the model that Grosse et al. estimate by sampling, taken exactly (Botev et al. 2017).
    K-FAC would use `Λ = Λ_S Λ_Aᵀ`; EK-FAC refits the diagonal in the Kronecker eigenbasis
    from the per-example gradients. Each layer's inverse-Hessian-vector product is

        (G_l + (weight_decay + δ) I)⁻¹ V = Q_S [(Q_Sᵀ V Q_A) / (Λ + weight_decay + δ)] Q_Aᵀ,

    for `V` the layer's test-loss gradient (a matrix like `[W | b]`); cross-layer curvature
    is ignored. For a linear model with a squared loss (`depth=0`) this is the exact Hessian.

    **Arguments:**

    - `mlp`: an `eqx.nn.MLP` whose activations have no parameters.
    - `loss_fn(prediction, target) -> scalar`: the loss of one example (convex in
      `prediction`, so that its Hessian has a real square root; negative eigenvalues are
      clipped to zero).
    - `train_data`, `test_data`: `(inputs, targets)`, each with a leading sample axis.
    - `damping`: `δ ≥ 0` added to the curvature's eigenvalues (beyond `weight_decay`).
    - `weight_decay`: the L2 coefficient of the training objective above; it adds to the
      curvature and to every training point's gradient `∇ℓ(θ̂, zᵢ)`.
    - `on_failure`: non-finite scores (e.g. a singular curvature with no damping) `raise`,
      become NaN (`"nan"`) or are returned (`"return"`).

    **Returns:** `I`, shape `(n,)`; `leave_one_out_change` turns it into predicted changes.
    """
    if not isinstance(mlp, eqx.nn.MLP):
        raise TypeError(f"mlp must be an equinox.nn.MLP; got {type(mlp).__name__}")
    learnt = jax.tree.leaves(eqx.filter((mlp.activation, mlp.final_activation), eqx.is_array))
    if learnt:
        raise ValueError(
            "mlp has activations with learnt parameters, which EK-FAC does not model; use "
            "influence(..., solver='cg') instead"
        )
    check_on_failure(on_failure)
    _check_non_negative("damping", damping)
    _check_non_negative("weight_decay", weight_decay)
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if not (isinstance(data, tuple) and len(data) == 2):
            raise TypeError(f"{name} must be a tuple (inputs, targets); got {type(data).__name__}")
        _num_samples(name, data)
    _check_scalar_loss("loss_fn(mlp(x), y)", lambda x, y: loss_fn(mlp(x), y), *_first(train_data))
    return _ekfac_influence(
        mlp, loss_fn, train_data, test_data,
        damping=damping, weight_decay=weight_decay, on_failure=on_failure,
    )  # fmt: skip


@eqx.filter_jit
def _ekfac_influence(mlp, loss_fn, train_data, test_data, *, damping, weight_decay, on_failure):
    layers = _mlp_layers(mlp)
    zeros = [jnp.zeros(layer.weight.shape[0], layer.weight.dtype) for layer in layers]

    def per_example(x, y):
        """Layer inputs `a_l`, loss gradients `g_l = ∂ℓ/∂s_l`, and Gauss-Newton factors
        `g_{l,k} = J_{s_l}ᵀ r_k` (stacked over `k`)."""
        forward = lambda shifts: _mlp_forward(mlp, layers, shifts, x)  # noqa: E731
        out, pullback, inputs = jax.vjp(forward, zeros, has_aux=True)
        loss = lambda f: loss_fn(jnp.reshape(f, out.shape), y)  # noqa: E731
        flat_out = jnp.reshape(out, (-1,))
        eigenvalues, vectors = jnp.linalg.eigh(jax.hessian(loss)(flat_out))
        roots = vectors * jnp.sqrt(jnp.maximum(eigenvalues, 0.0))  # R Rᵀ = ∇²_f loss
        (grads,) = pullback(jnp.reshape(jax.grad(loss)(flat_out), out.shape))
        (factors,) = jax.vmap(lambda r: pullback(jnp.reshape(r, out.shape)))(roots.T)
        return inputs, grads, factors

    train_inputs, train_grads, train_factors = jax.vmap(per_example)(*train_data)
    test_inputs, test_grads, _ = jax.vmap(per_example)(*test_data)
    shift = weight_decay + damping
    scores = 0.0
    for layer, a, g, gk, a_test, g_test in zip(
        layers, train_inputs, train_grads, train_factors, test_inputs, test_grads, strict=True
    ):
        weights = layer.weight
        if layer.bias is not None:
            weights = jnp.concatenate([weights, layer.bias[:, None]], axis=1)  # [W | b]
        _, q_a = jnp.linalg.eigh(jnp.einsum("ni,nj->ij", a, a) / a.shape[0])
        _, q_s = jnp.linalg.eigh(jnp.einsum("nko,nkp->op", gk, gk) / gk.shape[0])
        corrected = jnp.einsum("nko,ni->oi", (gk @ q_s) ** 2, (a @ q_a) ** 2) / a.shape[0]
        v = jnp.einsum("no,ni->oi", g_test, a_test) / a_test.shape[0]  # ∇_l L, no decay
        u = q_s @ ((q_s.T @ v @ q_a) / (corrected + shift)) @ q_a.T  # (G_l + shift I)⁻¹ v
        # ∇_l ℓ(θ̂, z)ᵀ u with ∇_l ℓ = g aᵀ + weight_decay [W | b]
        scores = scores - jnp.einsum("no,oi,ni->n", g, u, a) - weight_decay * jnp.sum(u * weights)
    failed = ~jnp.all(jnp.isfinite(scores))
    message = (
        "ekfac_influence: the influence scores are not finite: the EK-FAC curvature is "
        "singular (e.g. dead units); add damping="
    )
    return apply_on_failure(scores, failed, on_failure, message)

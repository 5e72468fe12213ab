"""The empirical neural tangent kernel of an Equinox model (Jacot, Gabriel & Hongler 2018),
by three methods (after Novak, Sohl-Dickstein & Schoenholz 2022, "Fast Finite Width Neural
Tangent Kernel"), with memory bounded by chunks of inputs and of parameters.

The model maps one input to an array output; its parameters are its floating-point array
leaves (`eqx.is_inexact_array`), as for `eqx.filter_grad`.
"""

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_choice, check_count
from ._ntk_mlp import NTKLinear

__all__ = ["NTK_METHODS", "NTK_OUTPUTS", "empirical_ntk"]

NTK_METHODS = ("jacobian", "jvp", "structured")
"""The algorithms of `empirical_ntk`'s `method`."""
NTK_OUTPUTS = ("pairs", "trace", "mean")
"""What `empirical_ntk` returns over the output axis (its `outputs`)."""

Method = Literal["jacobian", "jvp", "structured"]
Outputs = Literal["pairs", "trace", "mean"]


def empirical_ntk(
    model: Callable[[Array], Array],
    x1: Float[ArrayLike, "n1 ..."],
    x2: Float[ArrayLike, "n2 ..."] | None = None,
    *,
    method: Method = "jacobian",
    outputs: Outputs = "mean",
    chunk: int | None = None,
    param_chunk: int | None = None,
) -> Float[Array, "n1 n2"] | Float[Array, "n1 n2 out out"]:
    r"""The empirical neural tangent kernel (Jacot et al. 2018) of `model` between two batches
    of inputs,

        Θ(x, x')_{ab} = Σ_p ∂f_a(x)/∂θ_p · ∂f_b(x')/∂θ_p = [J(x) J(x')ᵀ]_{ab},

    the sum over every parameter `θ_p` (every floating-point array leaf of `model`), for each
    pair of output entries `a, b` (the output flattened to `out` entries).

    **Arguments:**

    - `model`: a callable pytree (an Equinox module) mapping **one** input to an array; the
      batches are mapped over it.
    - `x1`: inputs `(n1, ...)`, batch first.
    - `x2`: inputs `(n2, ...)` of the same trailing shape; `None` for `x1` itself.
    - `method`: how the contraction is computed (Novak et al. 2022):
        - `"jacobian"`: the Jacobians `J(x)` by reverse mode, contracted leaf by leaf: memory
          `O((n1 + n2) · out · P)` for `P` parameters, of which XLA:CPU keeps about one
          leaf's share live at a time (an MLP 32-512-512-4, 64 inputs, float32: 518 MiB,
          the two batches' Jacobians of its 512 × 512 weight).
        - `"jvp"`: NTK-vector products: for one `x'` at a time, the rows `J(x')ᵀ e_b` by a
          vector-Jacobian product, each pushed through `f(x)` by a Jacobian-vector product
          (`J(x) [J(x')ᵀ e_b]`). No Jacobian is formed: memory `O(out · P)` plus the
          activations, for `n2` sequential steps (the MLP above: 4.9 MiB, and 2× faster on
          CPU).
        - `"structured"`: per-layer structure. For an affine layer `h = c_w W a + c_b b` (an
          `eqx.nn.Linear`, or `NTKLinear`) `∂f_k/∂W = c_w g_k aᵀ` with `g_k = ∂f_k/∂h`, so its
          contribution is `(g_k(x) · g_m(x')) (c_w² a(x) · a(x') + c_b²)`: only the layer's
          inputs and output cotangents are formed (`O(n · out · width)` per layer instead of
          `O(n · out · width²)`). Every other parameter leaf goes through `"jacobian"`. Each
          such layer must be called exactly once per input and its parameters used nowhere
          else (checked: the call count).
    - `outputs`: `"pairs"`, every output pair, `(n1, n2, out, out)`; `"trace"`, the sum
      `Σ_a Θ_aa`, `(n1, n2)`; `"mean"`, that sum over `out`, `(n1, n2)` — the scalar kernel
      that a wide network's `Θ_ab → δ_ab Θ` converges to (neural-tangents' default
      `trace_axes=(-1,)` likewise averages).
    - `chunk`: at most this many inputs of `x1` and of `x2` at a time (blocks looped over with
      `lax.map`; each block of `x2` is recomputed for each block of `x1`: time for memory).
      `None`: all at once.
    - `param_chunk`: at most this many parameter entries per pass of `"jacobian"` and `"jvp"`
      (and of `"structured"`'s non-affine leaves): leaves are grouped in order, a leaf larger
      than `param_chunk` forms its own group, and the groups' kernels are summed one after
      another (one more forward and backward pass per group). `None`: all at once. This
      bounds what the program may hold whatever XLA's scheduling; on XLA:CPU, which already
      keeps about one leaf's Jacobians at a time, it saved nothing measurable (the MLP
      above), while `chunk=8` cut the 518 MiB to 67 MiB (for 4× the time: the second batch's
      Jacobians are recomputed per block of the first).

    **Returns:** `(n1, n2)` for `outputs="trace"` or `"mean"`, `(n1, n2, out, out)` for
    `"pairs"`. Jittable (with `eqx.filter_jit`) and vmappable over models and inputs.
    """
    check_choice("method", method, NTK_METHODS)
    check_choice("outputs", outputs, NTK_OUTPUTS)
    for name, value in (("chunk", chunk), ("param_chunk", param_chunk)):
        if value is not None:
            check_count(name, value)
    x1 = jnp.asarray(x1)
    if x1.ndim < 1 or x1.shape[0] < 1:
        raise ValueError(f"x1 must be a batch of inputs (n1 >= 1, ...), got shape {x1.shape}")
    if x2 is None:
        x2 = x1
    else:
        x2 = jnp.asarray(x2)
        if x2.ndim != x1.ndim or x2.shape[1:] != x1.shape[1:] or x2.shape[0] < 1:
            raise ValueError(
                f"x2 must be a batch of inputs (n2, ...) with x1's trailing shape "
                f"{x1.shape[1:]}, got shape {x2.shape}"
            )
    if not callable(model):
        raise TypeError(f"model must be a callable module, got {type(model).__name__}")
    out = eqx.filter_eval_shape(model, x1[0])
    if not isinstance(out, jax.ShapeDtypeStruct) or not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"model must map one input to a floating-point array, got {out}")
    if not jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)):
        raise ValueError("model has no parameters (no floating-point array leaves)")
    trace = outputs != "pairs"

    spec = jax.tree.map(eqx.is_inexact_array, model)
    kernel = None
    if method == "structured":
        rest, taps = _structured_spec(model)
        spec = rest
        if taps:
            kernel = _tiled(*_structured(model, taps, trace), x1, x2, chunk)
    for group in _groups(model, spec, param_chunk):
        if kernel is not None and param_chunk is not None:
            # One group after another: the barrier makes this group's inputs depend on the
            # kernel so far, so XLA cannot hold two groups' Jacobians at once.
            arrays, rest = eqx.partition(model, eqx.is_array)
            kernel, arrays, x1, x2 = jax.lax.optimization_barrier((kernel, arrays, x1, x2))
            model = eqx.combine(arrays, rest)
        params, static = eqx.partition(model, group)

        def f(p, x, static=static):
            return jnp.reshape(eqx.combine(p, static)(x), (-1,))

        parts = _jvp(f, params, trace) if method == "jvp" else _jacobian(f, params, trace)
        term = _tiled(*parts, x1, x2, chunk)
        kernel = term if kernel is None else kernel + term
    if outputs == "mean":
        kernel = kernel / max(1, int(np.prod(out.shape)))
    return kernel


# --- tiling over inputs --------------------------------------------------------------------

Parts = tuple[Callable[[Array], Any], Callable[[Array], Any], Callable[[Any, Any], Array]]


def _tiled(left, right, contract, x1: Array, x2: Array, chunk: int | None) -> Array:
    """`contract(left(x1), right(x2))`, by blocks of `chunk` inputs when `chunk` is given:
    `left` once per block of `x1`, `right` once per pair of blocks."""
    if chunk is None or (chunk >= x1.shape[0] and chunk >= x2.shape[0]):
        return contract(left(x1), right(x2))
    b1, b2 = _blocks(x1, chunk), _blocks(x2, chunk)

    def row(xa):
        features = left(xa)
        return jax.lax.map(lambda xb: contract(features, right(xb)), b2)

    k = jax.lax.map(row, b1)  # (blocks1, blocks2, c1, c2, ...)
    k = jnp.swapaxes(k, 1, 2)
    k = k.reshape(k.shape[0] * k.shape[1], k.shape[2] * k.shape[3], *k.shape[4:])
    return k[: x1.shape[0], : x2.shape[0]]


def _blocks(x: Array, chunk: int) -> Array:
    """`x` as `(blocks, min(chunk, n), ...)`, the last block padded with copies of the last
    input (which every model can evaluate; the padded rows are cut off)."""
    size = min(chunk, x.shape[0])
    blocks = -(-x.shape[0] // size)
    pad = blocks * size - x.shape[0]
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
    return x.reshape(blocks, size, *x.shape[1:])


# --- parameter groups ----------------------------------------------------------------------


def _groups(model, spec, param_chunk: int | None) -> list:
    """Filter specs (pytrees of bools shaped like `model`) that split the leaves marked in
    `spec` into groups of at most `param_chunk` entries (in leaf order)."""
    flags, treedef = jax.tree.flatten(spec)
    leaves = treedef.flatten_up_to(model)
    chosen = [i for i, flag in enumerate(flags) if flag]
    if not chosen:
        return []
    if param_chunk is None:
        return [spec]
    groups, current, size = [], [], 0
    for i in chosen:
        n = int(np.prod(jnp.shape(leaves[i])))
        if current and size + n > param_chunk:
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    groups.append(current)
    return [treedef.unflatten([i in set(g) for i in range(len(flags))]) for g in groups]


# --- the contractions ----------------------------------------------------------------------


def _contract_jacobians(j1, j2, trace: bool) -> Array:
    """`Σ_leaves J1 J2ᵀ` for Jacobian pytrees with leaves `(n, out, *leaf)`."""
    total = 0.0
    for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2), strict=True):
        a = a.reshape(*a.shape[:2], -1)
        b = b.reshape(*b.shape[:2], -1)
        total = total + jnp.einsum("iap,jap->ij" if trace else "iap,jbp->ijab", a, b)
    return total


def _jacobian(f, params, trace: bool) -> Parts:
    def jac(xs):
        return jax.vmap(jax.jacrev(f), (None, 0))(params, xs)

    return jac, jac, lambda a, b: _contract_jacobians(a, b, trace)


def _jvp(f, params, trace: bool) -> Parts:
    """NTK-vector products, one input `x'` of the second batch at a time (`lax.map`): its
    rows `J(x')ᵀ e_b` by one `vjp`, each pushed through `f(x)` for the whole first batch by
    `jvp`. Live memory: `out` parameter-sized tangents and the first batch's activations."""

    def contract(xs1, xs2):
        def push(x, v):
            return jax.jvp(lambda p: f(p, x), (params,), (v,))[1]

        def column(x2):
            y, pullback = jax.vjp(lambda p: f(p, x2), params)
            rows = jax.vmap(lambda e: pullback(e)[0])(jnp.eye(y.shape[0], dtype=y.dtype))
            # k[i, b, a] = [J(x_i) J(x2)ᵀ e_b]_a
            k = jax.vmap(jax.vmap(push, (None, 0)), (0, None))(xs1, rows)
            return jnp.trace(k, axis1=1, axis2=2) if trace else jnp.swapaxes(k, 1, 2)

        return jnp.swapaxes(jax.lax.map(column, xs2), 0, 1)

    return _identity, _identity, contract


def _identity(xs):
    return xs


# --- structured: affine layers ---------------------------------------------------------------


def _is_affine(node) -> bool:
    return isinstance(node, eqx.nn.Linear | NTKLinear)


def _affine_scales(layer) -> tuple[float, float]:
    """`(c_w, c_b)` of `h = c_w W a + c_b b`."""
    if isinstance(layer, NTKLinear):
        return layer.input_scale, layer.sigma_b
    return 1.0, 1.0 if layer.use_bias else 0.0


def _structured_spec(model) -> tuple[Any, list]:
    """The filter spec of the parameters outside affine layers, and the affine layers whose
    weight is a parameter (in flattening order)."""
    taps = [
        node
        for node in jax.tree.leaves(model, is_leaf=_is_affine)
        if _is_affine(node) and eqx.is_inexact_array(node.weight)
    ]

    def mark(node):
        if _is_affine(node) and eqx.is_inexact_array(node.weight):
            return jax.tree.map(lambda _: False, node)
        return eqx.is_inexact_array(node)

    return jax.tree.map(mark, model, is_leaf=_is_affine), taps


class _Tap:
    """An affine layer whose output is shifted by `delta` (so `∂f/∂delta` is the output
    cotangent `g`) and whose input is recorded (`a`)."""

    def __init__(self, layer, index: int, delta: Array, record: list):
        self.layer, self.index, self.delta, self.record = layer, index, delta, record

    def __call__(self, x, *, key=None):
        h = self.layer(x)
        self.record.append((self.index, jnp.reshape(x, (-1,))))
        return h + jnp.reshape(self.delta, jnp.shape(h))


def _structured(model, taps: list, trace: bool) -> Parts:
    scales = [_affine_scales(layer) for layer in taps]
    deltas = [jnp.zeros(layer.weight.shape[:1], layer.weight.dtype) for layer in taps]

    def tapped(ds, x):
        record: list = []
        counter = iter(range(len(taps)))

        def replace(node):
            if _is_affine(node) and eqx.is_inexact_array(node.weight):
                i = next(counter)
                return _Tap(node, i, ds[i], record)
            return node

        y = jax.tree.map(replace, model, is_leaf=_is_affine)(x)
        calls = [sum(1 for i, _ in record if i == k) for k in range(len(taps))]
        if any(c != 1 for c in calls):
            k = next(k for k, c in enumerate(calls) if c != 1)
            raise ValueError(
                f"method='structured' needs every affine layer called exactly once per input; "
                f"layer {k} ({type(taps[k]).__name__}, weight {taps[k].weight.shape}) was "
                f"called {calls[k]} times: use method='jacobian'"
            )
        recorded = dict(record)
        inputs = [c_w * recorded[k] for k, (c_w, _) in enumerate(scales)]
        return jnp.reshape(y, (-1,)), inputs

    def features(xs):
        def one(x):
            cotangents, inputs = jax.jacrev(tapped, has_aux=True)(deltas, x)
            return cotangents, inputs  # [(out, out_l)], [(in_l,)]

        return jax.vmap(one)(xs)

    def contract(left, right):
        (g1, a1), (g2, a2) = left, right
        total = 0.0
        for (_, c_b), ga, gb, aa, ab in zip(scales, g1, g2, a1, a2, strict=True):
            inner = aa @ ab.T + c_b**2  # (n1, n2)
            gg = jnp.einsum("iak,jak->ij" if trace else "iak,jbk->ijab", ga, gb)
            total = total + gg * (inner if trace else inner[:, :, None, None])
        return total

    return features, features, contract

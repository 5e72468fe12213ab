"""Training in the kernel regime: the gradient flow of the squared loss for a network
linearised around its initialisation, whose function-space dynamics are linear in the tangent
kernel (Jacot et al. 2018; Lee et al. 2019, "Wide Neural Networks of Any Depth Evolve as Linear
Models Under Gradient Descent").
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_positive
from ..solve import odeint

__all__ = ["KernelFlow", "kernel_flow"]


class KernelFlow(eqx.Module):
    """The predictions of a linearised network along its gradient flow (`kernel_flow`).

    - `ts`: the times, `(time,)`. With `lr` the step size of gradient descent, time `t` is
      its step `t` (for steps small against `1 / (lr λ_max)`).
    - `train`: the predictions on the training inputs, `(time, n_train, ...)`.
    - `test`: the predictions on the test inputs, `(time, n_test, ...)`, or `None`.
    """

    ts: Float[Array, " time"]
    train: Float[Array, "time n_train ..."]
    test: Float[Array, "time n_test ..."] | None


def kernel_flow(
    ntk: Float[ArrayLike, "n n"] | Float[ArrayLike, "n n out out"],
    f0: Float[ArrayLike, "n ..."],
    y: Float[ArrayLike, "n ..."],
    ts: Float[ArrayLike, " time"],
    *,
    lr: float = 1.0,
    ntk_test: Float[ArrayLike, "m n"] | Float[ArrayLike, "m n out out"] | None = None,
    f0_test: Float[ArrayLike, "m ..."] | None = None,
    solver: str | dfx.AbstractSolver = "eigh",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
) -> KernelFlow:
    r"""The kernel gradient flow of the squared loss `L = ½ Σ_i ‖f(x_i) − y_i‖²`: with the
    tangent kernel `Θ` fixed (its value at initialisation, exact for a linearised network and
    in the infinite-width limit),

        df/dt = −η Θ (f − y),                    f(t₀) = f₀   (training inputs),
        df_test/dt = −η Θ_test,train (f − y),    f_test(t₀) = f_test,0,

    in closed form through the eigendecomposition `Θ = V diag(λ) Vᵀ` (Lee et al. 2019, eq. (9)):

        f(t) = y + V e^{−ηλt} Vᵀ (f₀ − y),
        f_test(t) = f_test,0 − Θ_test,train V diag((1 − e^{−ηλt}) / λ) Vᵀ (f₀ − y),

    (the second is `f_test,0 − Θ_test,train Θ⁻¹ (I − e^{−ηΘt}) (f₀ − y)`, with `ηt` in place of
    `(1 − e^{−ηλt}) / λ` at `λ = 0`, so a singular `Θ` needs no inverse), or numerically with
    `jaxdyn.odeint`.

    **Arguments:**

    - `ntk`: the train-train kernel: `(n, n)`, one scalar kernel acting on each output entry
      alike (`empirical_ntk(outputs="mean")`, `analytic_kernels`), or `(n, n, out, out)` for
      every output pair (`outputs="pairs"`; then the outputs have `out` entries).
    - `f0`: the predictions on the training inputs at `ts[0]`, `(n, ...)`.
    - `y`: the targets, shaped like `f0`.
    - `ts`: the times at which predictions are returned; the flow starts at `ts[0]`.
    - `lr`: the learning rate `η`.
    - `ntk_test`: the test-train kernel `(m, n)` (or `(m, n, out, out)`), with `f0_test` the
      test predictions at `ts[0]`, `(m, ...)`; both or neither.
    - `solver`: `"eigh"` for the closed form, or an ODE solver of `jaxdyn.odeint` (a name or a
      Diffrax solver) for the numerical solution, with its `rtol`, `atol` and `dt0`.

    **Returns:** a `KernelFlow`. Jittable; differentiable through `odeint`, and through the
    closed form where `Θ`'s eigenvalues are distinct (the eigendecomposition's derivative
    divides by their differences).
    """
    check_positive("lr", lr)
    f0, y = jnp.asarray(f0), jnp.asarray(y)
    if f0.shape != y.shape or f0.ndim < 1:
        raise ValueError(
            f"f0 and y must be predictions (n, ...) of one shape, got {f0.shape} and {y.shape}"
        )
    kernel, residual = _as_matrix("ntk", ntk, f0 - y, f0.shape[0])
    if (ntk_test is None) != (f0_test is None):
        raise ValueError("ntk_test and f0_test go together: give both or neither")
    if ntk_test is not None:
        f0_test = jnp.asarray(f0_test)
        if f0_test.shape[1:] != f0.shape[1:]:
            raise ValueError(
                f"f0_test must be (m, ...) with f0's trailing shape {f0.shape[1:]}, got "
                f"{f0_test.shape}"
            )
        ntk_test = jnp.asarray(ntk_test)
        if ntk_test.ndim != jnp.ndim(ntk) or ntk_test.shape[:2] != (f0_test.shape[0], f0.shape[0]):
            raise ValueError(
                f"ntk_test must be the test-train kernel ({f0_test.shape[0]}, {f0.shape[0]}"
                f"{', ...' if ntk_test.ndim == 4 else ''}) matching ntk, got {ntk_test.shape}"
            )
        test_kernel = _flatten_kernel(ntk_test)
        test0 = f0_test.reshape(test_kernel.shape[0], -1)
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"ts must be a 1-D array of times, got shape {ts.shape}")
    target = y.reshape(residual.shape)

    if isinstance(solver, str) and solver == "eigh":
        lam, vecs = jnp.linalg.eigh((kernel + kernel.T) / 2)
        coefficients = vecs.T @ residual  # (N, columns)
        elapsed = lr * (ts - ts[0])[:, None]  # η (t − t₀), (time, 1)
        decay = jnp.exp(-elapsed * lam)  # (time, N)
        train = target + jnp.einsum("nk,tk,kc->tnc", vecs, decay, coefficients)
        test = None
        if ntk_test is not None:
            # (1 − e^{−ηλt}) / λ = ηt · h(ηλt), h(x) = −expm1(−x)/x, h(0) = 1.
            x = elapsed * lam
            small = jnp.abs(x) < 1e-8
            h = jnp.where(small, 1 - x / 2, -jnp.expm1(-x) / jnp.where(small, 1.0, x))
            test = test0 - jnp.einsum(
                "mn,nk,tk,kc->tmc", test_kernel, vecs, elapsed * h, coefficients
            )
    else:

        def field(t, state, args):
            error = state["train"] - target
            drift = {"train": -lr * (kernel @ error)}
            if ntk_test is not None:
                drift["test"] = -lr * (test_kernel @ error)
            return drift

        state0 = {"train": target + residual}
        if ntk_test is not None:
            state0["test"] = test0
        sol = odeint(field, state0, ts, solver=solver, rtol=rtol, atol=atol, dt0=dt0)
        train, test = sol.ys["train"], sol.ys.get("test")
    train = train.reshape(ts.shape[0], *f0.shape)
    if test is not None:
        test = test.reshape(ts.shape[0], *f0_test.shape)
    return KernelFlow(ts=ts, train=train, test=test)


def _flatten_kernel(k: Array) -> Array:
    """`(n, m)` as is; `(n, m, a, b)` as the `(n·a, m·b)` matrix of output-pair blocks."""
    if k.ndim == 2:
        return k
    n, m, a, b = k.shape
    return jnp.transpose(k, (0, 2, 1, 3)).reshape(n * a, m * b)


def _as_matrix(name: str, ntk, residual: Array, n: int) -> tuple[Array, Array]:
    """The kernel as a matrix and the residual as `(rows, columns)` it acts on."""
    ntk = jnp.asarray(ntk)
    if ntk.ndim == 2 and ntk.shape == (n, n):
        return ntk, residual.reshape(n, -1)
    out = int(jax.numpy.size(residual) // n)
    if ntk.ndim == 4 and ntk.shape == (n, n, out, out):
        return _flatten_kernel(ntk), residual.reshape(n * out, 1)
    raise ValueError(
        f"{name} must be ({n}, {n}) or ({n}, {n}, {out}, {out}) for {n} training predictions "
        f"of {out} entries, got {ntk.shape}"
    )

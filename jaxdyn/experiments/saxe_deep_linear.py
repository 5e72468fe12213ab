"""Exact learning curves of a deep linear network (Saxe, McClelland & Ganguli 2014, "Exact
solutions to the nonlinear dynamics of learning in deep linear neural networks", eq. (7)–(10)).

Setting. A three-layer linear network `ŷ = W₃₂ W₂₁ x` (8 → 16 → 6) trained on the square loss
`L = (1/2N) Σ_μ ‖y_μ − W₃₂ W₂₁ x_μ‖²` over `N` whitened inputs (`Σ₁₁ = X Xᵀ/N = I`, exactly)
with targets from a linear teacher whose input–output correlation `Σ₃₁ = Y Xᵀ/N = U S Vᵀ` has
singular values `s = (3, 2, 1, 0.5)` (`U`, `V`: random orthonormal columns from the seed).
Balanced, decoupled initial weights `W₂₁ = √u₀ R Vᵀ`, `W₃₂ = √u₀ U Rᵀ` (`R`: random orthonormal
hidden directions) start every mode at strength `u₀`.

Closed form. Under gradient flow `τ dW/dt = −∇_W L` each mode's strength `u_α = u_αᵀ W₃₂ W₂₁
v_α` obeys `τ du/dt = 2u(s − u)`, so `u(t) = s e^{2st/τ} / (e^{2st/τ} − 1 + s/u₀)`: a sigmoidal
transition at the half-learning time `t½ = (τ/2s) ln(s/u₀ − 1)` (1.33, 1.90, 3.45, 6.21 for
these `s` at `u₀ = 1e-3`, `τ = 1`), stronger modes first.

Simulation. The gradient flow of the weights themselves (the gradient of the data loss by
`jax.grad`, nothing reduced to modes) solved by `jaxdyn.odeint` at tight tolerances, and plain
gradient descent with step `η` compared at `t = k η τ`. Reported: the largest error of the mode
strengths over the saved times, relative to `s_α` (targets: 1e-6 for the flow, 1% for gradient
descent), the largest entry error of the network map `W₃₂ W₂₁` against `U diag(u(t)) Vᵀ`, and
the half-learning times read off the simulation (linear interpolation on the saved grid)
against the closed form. The dynamics do not depend on the random `U`, `V`, `R`: seeds change
only rounding.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, positive, positive_list, section
from ..plotting import Figure
from ..solve import SOLVERS, odeint
from ._registry import register


@dataclasses.dataclass
class NetworkConfig:
    inputs: int = at_least(8, 1)
    hidden: int = at_least(16, 1)
    outputs: int = at_least(6, 1)
    singular_values: list[float] = positive_list([3.0, 2.0, 1.0, 0.5], "singular values")
    u0: float = positive(1e-3)  # every mode's initial strength (balanced: √u0 in each layer)
    tau: float = positive(1.0)  # time constant of the flow, τ dW/dt = −∇L
    num_samples: int = at_least(32, 1)  # N whitened inputs (N >= inputs)


@dataclasses.dataclass
class FlowConfig:
    t1: float = positive(15.0)  # end of the comparison (s = 0.5 is at 99.99% by t = 15)
    num_times: int = at_least(1501, 3)  # saved times, evenly spaced over [0, t1]
    solver: str = choice("dopri8", SOLVERS)
    rtol: float = positive(1e-10)
    atol: float = positive(1e-12)
    max_steps: int = at_least(100_000, 1)


@dataclasses.dataclass
class SaxeDeepLinearConfig:
    experiment: str = "saxe_deep_linear"
    seed: int = 0  # the random orthonormal U, V and hidden directions R
    figures: bool = True
    target_flow_rel_error: float = positive(1e-6)
    target_gd_rel_error: float = positive(0.01)
    learning_rate: float = positive(1e-3)  # η of gradient descent: step k is t = k η τ
    network: NetworkConfig = section(NetworkConfig)
    flow: FlowConfig = section(FlowConfig)


def _check(cfg: DictConfig) -> None:
    n = cfg.network
    rank = len(n.singular_values)
    if rank > min(n.inputs, n.hidden, n.outputs):
        raise ConfigError(
            f"network.singular_values has {rank} modes; at most min(inputs, hidden, outputs) = "
            f"{min(n.inputs, n.hidden, n.outputs)}"
        )
    if n.num_samples < n.inputs:
        raise ConfigError(
            f"network.num_samples={n.num_samples} must be >= network.inputs={n.inputs} for "
            "whitened inputs (X Xᵀ/N = I)"
        )


def closed_form(t: np.ndarray, s: np.ndarray, u0: float, tau: float) -> np.ndarray:
    """`u(t) = s e^{2st/τ} / (e^{2st/τ} − 1 + s/u₀)` for every time (rows) and mode (columns),
    written as `s / (1 + (s/u₀ − 1) e^{−2st/τ})` so that it does not overflow."""
    decay = np.exp(-2.0 * np.outer(t, s) / tau)
    return s / (1.0 + (s / u0 - 1.0) * decay)


def half_learning_time(s: np.ndarray, u0: float, tau: float) -> np.ndarray:
    """`t½ = (τ/2s) ln(s/u₀ − 1)`: where the closed form reaches `s/2`."""
    return tau / (2.0 * s) * np.log(s / u0 - 1.0)


def _crossing(t: np.ndarray, u: np.ndarray, level: float) -> float | None:
    """The first time `u` reaches `level`, linearly interpolated; `None` if it never does."""
    above = np.nonzero(u >= level)[0]
    if not above.size or above[0] == 0:
        return None
    k = above[0]
    return float(t[k - 1] + (level - u[k - 1]) / (u[k] - u[k - 1]) * (t[k] - t[k - 1]))


def _orthonormal(key, rows: int, columns: int) -> jnp.ndarray:
    """`rows × columns` with orthonormal columns (QR of a Gaussian matrix)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (rows, columns)))
    return q * jnp.sign(jnp.diag(r))


def problem(cfg: DictConfig) -> dict:
    """The data `(X, Y)` (samples as columns), the teacher's `U, S, V`, and the initial weights
    `(W₂₁, W₃₂)`, from `cfg.seed`."""
    n = cfg.network
    s = jnp.asarray(n.singular_values, jnp.float64)
    rank = s.shape[0]
    k_u, k_v, k_r, k_x = jax.random.split(jax.random.key(cfg.seed), 4)
    u = _orthonormal(k_u, n.outputs, rank)
    v = _orthonormal(k_v, n.inputs, rank)
    r = _orthonormal(k_r, n.hidden, rank)
    x = jnp.sqrt(n.num_samples) * _orthonormal(k_x, n.num_samples, n.inputs).T  # X Xᵀ/N = I
    y = (u * s) @ v.T @ x  # Y Xᵀ/N = U S Vᵀ
    scale = jnp.sqrt(n.u0)
    return {"x": x, "y": y, "u": u, "s": s, "v": v,
            "weights": (scale * r @ v.T, scale * u @ r.T)}  # fmt: skip


def _loss(weights, x, y):
    w21, w32 = weights
    return 0.5 * jnp.sum((y - w32 @ w21 @ x) ** 2) / x.shape[1]


def _modes(weights, u, v):
    """`u_α = u_αᵀ W₃₂ W₂₁ v_α` and the network map `W₃₂ W₂₁`."""
    w21, w32 = weights
    product = w32 @ w21
    return jnp.einsum("oa,oi,ia->a", u, product, v), product


def gradient_flow(p: dict, ts: np.ndarray, cfg: DictConfig):
    """The weights under `τ dW/dt = −∇L`, solved by `odeint` and saved at `ts`."""
    f = cfg.flow
    tau = cfg.network.tau

    def field(t, weights, args):
        x, y = args
        return jax.tree.map(lambda g: -g / tau, jax.grad(_loss)(weights, x, y))

    @jax.jit
    def solve(weights, x, y, u, v):
        sol = odeint(field, weights, ts, args=(x, y), solver=f.solver, rtol=f.rtol, atol=f.atol,
                     adjoint="direct", max_steps=f.max_steps)  # fmt: skip
        modes, maps = jax.vmap(lambda w21, w32: _modes((w21, w32), u, v))(*sol.ys)
        return modes, maps, sol.stats.num_steps

    return solve(p["weights"], p["x"], p["y"], p["u"], p["v"])


def gradient_descent(p: dict, num_steps: int, every: int, cfg: DictConfig):
    """Plain gradient descent `W ← W − η ∇L`, its mode strengths every `every` steps."""
    eta = cfg.learning_rate

    @jax.jit
    def run(weights, x, y, u, v):
        def step(weights, _):
            grads = jax.grad(_loss)(weights, x, y)
            return jax.tree.map(lambda w, g: w - eta * g, weights, grads), None

        def block(weights, _):
            modes = _modes(weights, u, v)[0]
            return jax.lax.scan(step, weights, length=every)[0], modes

        return jax.lax.scan(block, weights, length=num_steps // every + 1)[1]

    return run(p["weights"], p["x"], p["y"], p["u"], p["v"])


def _figure(run_dir: Path, ts, flow, gd_t, gd, closed, gd_closed, s) -> None:
    fig = Figure(figsize=(7, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for a in range(s.shape[0]):
        top.plot(ts, flow[:, a], color=f"C{a}", lw=2, alpha=0.6, label=f"s = {s[a]:g}: flow")
        top.plot(ts, closed[:, a], "k--", lw=0.9)
        top.plot(gd_t[::10], gd[::10, a], ".", color=f"C{a}", ms=3)
        top.axhline(s[a], color=f"C{a}", lw=0.5, ls=":")
        bottom.semilogy(ts, np.abs(flow[:, a] - closed[:, a]) / s[a], color=f"C{a}", lw=1)
        bottom.semilogy(gd_t, np.abs(gd[:, a] - gd_closed[:, a]) / s[a], color=f"C{a}", lw=1,
                        ls="--")  # fmt: skip
    top.plot([], [], "k--", lw=0.9, label="closed form")
    top.plot([], [], "k.", ms=3, label="gradient descent")
    top.set(ylabel="mode strength $u_α(t)$",
            title="Saxe et al. 2014: a deep linear network learns mode by mode")  # fmt: skip
    top.legend(loc="lower right", fontsize=8)
    bottom.set(xlabel="t / τ", ylabel="|u − closed form| / s",
               title="error: gradient flow (solid), gradient descent (dashed)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(run_dir / "mode_strengths.png", dpi=120)


@register("saxe_deep_linear", SaxeDeepLinearConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Deep linear network learning curves against Saxe et al.'s closed form (2014)."""
    with jax.enable_x64(True):  # a 1e-6 comparison of strengths grown from 1e-3
        return _run(cfg, run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    n = cfg.network
    p = problem(cfg)
    s = np.asarray(p["s"])
    ts = np.linspace(0.0, cfg.flow.t1, cfg.flow.num_times)
    modes, maps, num_steps = gradient_flow(p, ts, cfg)
    flow = np.asarray(modes)
    closed = closed_form(ts, s, n.u0, n.tau)
    flow_error = np.abs(flow - closed) / s
    exact_maps = np.einsum("oa,ta,ia->toi", np.asarray(p["u"]), closed, np.asarray(p["v"]))
    map_error = float(np.max(np.abs(np.asarray(maps) - exact_maps)))

    # gradient descent: step k is t = k η τ; modes saved on the flow's grid where it fits
    eta = cfg.learning_rate
    every = max(1, round((ts[1] - ts[0]) / (eta * n.tau)))
    num_gd = int(round(cfg.flow.t1 / (eta * n.tau)))
    gd = np.asarray(gradient_descent(p, num_gd, every, cfg))
    gd_t = eta * n.tau * every * np.arange(gd.shape[0])
    gd_closed = closed_form(gd_t, s, n.u0, n.tau)
    gd_error = np.abs(gd - gd_closed) / s

    closed_half = half_learning_time(s, n.u0, n.tau)
    flow_half = [_crossing(ts, flow[:, a], s[a] / 2) for a in range(s.shape[0])]
    gd_half = [_crossing(gd_t, gd[:, a], s[a] / 2) for a in range(s.shape[0])]
    half_errors = [abs(h - c) for h, c in zip(flow_half, closed_half, strict=True) if h is not None]

    def per_mode(values):
        return {f"mode_{a + 1}": (None if v is None else float(v)) for a, v in enumerate(values)}

    flow_max, gd_max = float(flow_error.max()), float(gd_error.max())
    summary = {
        "flow_max_rel_error": flow_max,
        "gd_max_rel_error": gd_max,
        "flow_max_abs_error_network_map": map_error,
        "target_flow_rel_error": cfg.target_flow_rel_error,
        "target_gd_rel_error": cfg.target_gd_rel_error,
        "target_met": bool(
            np.isfinite(flow_max)
            and flow_max <= cfg.target_flow_rel_error
            and np.isfinite(gd_max)
            and gd_max <= cfg.target_gd_rel_error
            and len(half_errors) == s.shape[0]
        ),  # fmt: skip
        "flow_rel_error_per_mode": per_mode(flow_error.max(axis=0)),
        "gd_rel_error_per_mode": per_mode(gd_error.max(axis=0)),
        "half_learning_time_closed_form": per_mode(closed_half),
        "half_learning_time_flow": per_mode(flow_half),
        "half_learning_time_gd": per_mode(gd_half),
        "half_learning_time_max_abs_error_flow": max(half_errors) if half_errors else None,
        "final_strength_over_s": per_mode(flow[-1] / s),
        "flow_solver_steps": int(num_steps),
    }
    if cfg.figures:
        _figure(run_dir, ts, flow, gd_t, gd, closed, gd_closed, s)
    return summary

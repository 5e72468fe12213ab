"""Acceleration as a dynamical system: Nesterov's method and heavy ball against their ODEs (Su,
Boyd & Candès 2016, "A differential equation for modeling Nesterov's accelerated gradient
method"; the heavy-ball counterexample of Lessard, Recht & Packard 2016, §4.6; the dynamical-
systems reading of "On the dynamics of acceleration in first order gradient methods").

ODE against iterates. Nesterov's `x_k = y_{k−1} − s∇f(y_{k−1})`, `y_k = x_k + (k−1)/(k+2)
(x_k − x_{k−1})` tends, as `s → 0`, to `Ẍ + (3/t)Ẋ + ∇f(X) = 0`, `X(0) = x₀`, `Ẋ(0) = 0`,
with `x_k ≈ X(k√s)` (SBC Theorem 2). The ODE is solved by `jaxdyn.odeint` (`nesterov_flow`:
dopri8, tolerances 1e-10/1e-12, started from its series at `t₀` = 1e-3 × the first saved
time, the friction `3/t` being singular at `0`). Reported:
`max_{k√s ≤ T} ‖x_k − X(k√s)‖ / ‖x₀ − x*‖` for decreasing `s` and its order in `√s`
(log-log slope), on an ill-conditioned quadratic `f = ½ (x − x*)ᵀA(x − x*)` (eigenvalues
log-spaced in `[μ, L]`, a random rotation) and a logistic regression on generated data; the
ODE against its closed form on the quadratic (`X = x* + Σ_λ 2J₁(√λ t)/(√λ t) (x₀ − x*)_λ`);
and SBC's bound `f(X(t)) − f* ≤ 2‖x₀ − x*‖²/t²`
(Theorem 3), as the largest ratio of the two along the ODE (≤ 1 when it holds).

Rates. Log-log slopes of `f − f*` over a window `[t_a, t_b]`: gradient flow (`t^{−1}` on the
quadratic, whose log-spaced spectrum with equal weights makes the worst-case rates visible),
the Nesterov ODE (`t^{−2}`) and Nesterov's iterates (`k^{−2}`), and linear rates of the heavy-ball
ODE `Ẍ + 2√μ Ẋ + ∇f = 0` on `μ`-strongly convex problems (a quadratic of condition number
`κ`, an ℓ2-regularised logistic regression): the fitted `−d log(f − f*)/dt` against the
guaranteed `√μ` (Wilson, Recht & Jordan 2016) and `2√μ` (every mode's amplitude decays as
`e^{−√μ t}` on a quadratic).

Heavy ball's non-convergence. Lessard et al.'s `μ = 1`, `L = 25` function with
`∇f(x) = 25x (x < 1), x + 24 (1 ≤ x < 2), 25x − 24 (x ≥ 2)`: heavy ball with its tuned
`α = 4/(√L + √μ)²`, `β = ((√κ − 1)/(√κ + 1))²` (the best rate on every quadratic of
curvature in `[μ, L]`) settles on a 3-cycle from `x₀ ∈ [3.07, 3.46]` (drawn by the seed),
while Nesterov's strongly convex method (`1/L`, `(√κ − 1)/(√κ + 1)`) converges. The
dynamical-systems view explains it: the continuous heavy ball `Ẍ + aẊ + ∇f = 0` with the map's
own damping `a = (1 − β)/√α` converges (its energy `f + ½Ẋ²` falls as `a Ẋ²`), so the cycle
belongs to the discretisation, not to the dynamics. It is not a step past a stability limit:
on a quadratic of curvature `h` heavy ball is stable iff `0 < α h < 2(1 + β) = 26/9 ≈ 2.89`,
and the tuned `α L = 25/9 ≈ 2.78` is inside it (spectral radius `2/3` on each piece: the
summary's `heavy_ball_piece_spectral_radius`). The cycle comes from switching between the
pieces of the non-quadratic `f`: each piece's linear map is stable, their alternation is not
(Lessard, Recht & Packard's point: an analysis on quadratics does not certify heavy ball on
general strongly convex `f`). With the same `a` heavy ball converges again once `α` is reduced
(reported: the largest `α` of a halving ladder that converges). Nesterov's map is heavy ball
in `y` plus the gradient correction `−αβ (∇f(y_k) − ∇f(y_{k−1}))` (a Hessian damping
`√s ∇²f(X) Ẋ` in the limit), which is what keeps it convergent at its step. We had the seed
paper's abstract only; this is our reading of its claim, measured, not its derivation
(passivity and immersion, geometric singular perturbation).
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special  # a dependency of jax; jax.scipy's bessel_jn is NaN for small arguments
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, positive, positive_list, section
from ..learning import heavy_ball_flow, heavy_ball_iterates, nesterov_flow, nesterov_iterates
from ..plotting import Figure
from ..solve import SOLVERS, odeint
from ._registry import register


@dataclasses.dataclass
class QuadraticConfig:
    dim: int = at_least(30, 1)
    mu: float = positive(1e-6)  # smallest eigenvalue (weakly convex over the rate window)
    lipschitz: float = positive(1.0)  # largest eigenvalue L


@dataclasses.dataclass
class LogisticConfig:
    num_samples: int = at_least(200, 2)
    dim: int = at_least(10, 1)
    teacher_scale: float = positive(1.0)  # labels ~ Bernoulli(σ(w_trueᵀx)), w_true ~ N(0, scale²)
    l2: float = positive(0.01)  # μ of the regularised problem of the heavy-ball rate


@dataclasses.dataclass
class RatesConfig:
    t_a: float = positive(10.0)  # the fitting window [t_a, t_b] (log-spaced points)
    t_b: float = positive(100.0)
    num_points: int = at_least(400, 3)
    kappa: float = at_least(100.0, 1.0)  # the strongly convex quadratic of the heavy-ball rate
    hb_t_b: float = positive(60.0)  # its linear-rate window ends here (f − f* ≈ e^{−2√μ t})
    nesterov_step: float = positive(0.01)  # s·L of the discrete Nesterov rate


@dataclasses.dataclass
class CounterexampleConfig:
    x0_low: float = 3.07  # Lessard et al.'s interval of initial points that cycle
    x0_high: float = 3.46
    num_steps: int = at_least(3000, 10)
    ode_t1: float = positive(200.0)
    halvings: int = at_least(6, 1)  # α/2, α/4, … with the ODE's damping kept


@dataclasses.dataclass
class AccelerationOdeConfig:
    experiment: str = "acceleration_ode"
    seed: int = 0  # the quadratic's rotation, x0 and x*, the logistic data; x0 of the cycle
    figures: bool = True
    steps: list[float] = positive_list([1e-1, 1e-2, 1e-3, 1e-4], "step sizes s·L")
    horizon: float = positive(20.0)  # T of the iterate comparison, in units of 1/√L
    solver: str = choice("dopri8", SOLVERS)  # of every ODE solve
    rtol: float = positive(1e-10)
    atol: float = positive(1e-12)
    max_steps: int = at_least(200_000, 1)
    quadratic: QuadraticConfig = section(QuadraticConfig)
    logistic: LogisticConfig = section(LogisticConfig)
    rates: RatesConfig = section(RatesConfig)
    counterexample: CounterexampleConfig = section(CounterexampleConfig)


def _check(cfg: DictConfig) -> None:
    if len(set(cfg.steps)) != len(cfg.steps) or len(cfg.steps) < 2:
        raise ConfigError(f"steps={list(cfg.steps)} must hold at least two distinct step sizes")
    if max(cfg.steps) > 1:
        raise ConfigError(f"steps={list(cfg.steps)}: s·L must be <= 1 (Nesterov needs s <= 1/L)")
    if not cfg.rates.t_a < cfg.rates.t_b:
        raise ConfigError(f"rates.t_a={cfg.rates.t_a} must be < rates.t_b={cfg.rates.t_b}")
    if not cfg.rates.t_a < cfg.rates.hb_t_b:
        raise ConfigError(f"rates.t_a={cfg.rates.t_a} must be < rates.hb_t_b={cfg.rates.hb_t_b}")
    if not cfg.quadratic.mu < cfg.quadratic.lipschitz:
        raise ConfigError(
            f"quadratic.mu={cfg.quadratic.mu} must be < quadratic.lipschitz="
            f"{cfg.quadratic.lipschitz}"
        )
    c = cfg.counterexample
    if not c.x0_low <= c.x0_high:
        raise ConfigError(f"counterexample.x0_low={c.x0_low} must be <= x0_high={c.x0_high}")


# ----------------------------------------------------------------------------- problems


def quadratic(key, dim: int, mu: float, lipschitz: float) -> dict:
    """`f = ½ (x − x*)ᵀ A (x − x*)`, `A = Q diag(λ) Qᵀ` with `λ` log-spaced in `[μ, L]`."""
    k_q, k_x, k_s = jax.random.split(key, 3)
    q, r = jnp.linalg.qr(jax.random.normal(k_q, (dim, dim)))
    q = q * jnp.sign(jnp.diag(r))
    lam = jnp.logspace(np.log10(mu), np.log10(lipschitz), dim)
    a = (q * lam) @ q.T
    x_star = jax.random.normal(k_s, (dim,))
    x0 = x_star + jax.random.normal(k_x, (dim,))

    def f(x):
        return 0.5 * (x - x_star) @ a @ (x - x_star)

    return {"f": f, "grad": jax.grad(f), "x0": x0, "x_star": x_star, "f_star": 0.0,
            "lipschitz": lipschitz, "mu": mu, "q": q, "lam": lam}  # fmt: skip


def logistic(key, cfg: DictConfig, l2: float = 0.0) -> dict:
    """Mean logistic loss `(1/P) Σ log(1 + e^{−y wᵀx})` (+ `½ l2 ‖w‖²`) on generated data:
    `x ~ N(0, I)`, `y = ±1` with `P(y = 1) = σ(w_trueᵀx)`; `w*` by Newton's method."""
    c = cfg.logistic
    k_x, k_w, k_y = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (c.num_samples, c.dim))
    w_true = c.teacher_scale * jax.random.normal(k_w, (c.dim,))
    y = jnp.where(jax.random.uniform(k_y, (c.num_samples,)) < jax.nn.sigmoid(x @ w_true), 1.0, -1.0)

    def f(w):
        return jnp.mean(jax.nn.softplus(-y * (x @ w))) + 0.5 * l2 * w @ w

    grad, hess = jax.grad(f), jax.hessian(f)

    @jax.jit
    def newton(w):  # from 0: quadratic convergence, to rounding
        return jax.lax.fori_loop(0, 40, lambda _, w: w - jnp.linalg.solve(hess(w), grad(w)), w)

    w = newton(jnp.zeros(c.dim))
    lipschitz = float(jnp.linalg.eigvalsh(x.T @ x)[-1] / (4 * c.num_samples) + l2)
    return {"f": f, "grad": grad, "x0": jnp.zeros(c.dim), "x_star": w, "f_star": float(f(w)),
            "lipschitz": lipschitz, "mu": l2,
            "grad_norm_at_star": float(jnp.linalg.norm(grad(w)))}  # fmt: skip


def lessard_gradient(x):
    """`∇f` of Lessard, Recht & Packard's counterexample (2016, §4.6), `μ = 1`, `L = 25`."""
    return jnp.where(x < 1, 25 * x, jnp.where(x < 2, x + 24, 25 * x - 24))


def lessard_f(x):
    """Its `f` (continuous, `C¹`, minimum `0` at `0`)."""
    middle = jnp.where(x < 2, 0.5 * x**2 + 24 * x - 12, 12.5 * x**2 - 24 * x + 36)
    return jnp.where(x < 1, 12.5 * x**2, middle)


# ----------------------------------------------------------------------------- measurements


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _grids(p: dict, cfg: DictConfig) -> dict:
    """The times `k√s`, `k = 1 … ⌊T/√s⌋`, of each step size, and the rate grid: early
    (`[1e-2, t_a)`) and window (`[t_a, t_b]`, log-spaced)."""
    lip = p["lipschitz"]
    horizon = cfg.horizon / np.sqrt(lip)
    grids = {s_l: np.sqrt(s_l / lip) * np.arange(1, int(np.floor(horizon * np.sqrt(lip / s_l))) + 1)
             for s_l in cfg.steps}  # fmt: skip
    r = cfg.rates
    early = np.logspace(-2, np.log10(r.t_a), 200, endpoint=False)
    window = np.logspace(np.log10(r.t_a), np.log10(r.t_b), r.num_points)
    return {"steps": grids, "early": early, "window": window}


def nesterov_solution(p: dict, cfg: DictConfig) -> tuple[dict, Callable]:
    """One solve of the Nesterov ODE on the union of every grid (one compiled program per
    problem); returns the grids and `X(t)` for any of their times."""
    grids = _grids(p, cfg)
    union = np.unique(np.concatenate([grids["early"], grids["window"], *grids["steps"].values()]))
    t0 = 1e-3 * min(np.sqrt(min(cfg.steps) / p["lipschitz"]), union[0])
    sol = nesterov_flow(p["grad"], p["x0"], np.concatenate([[t0], union]), solver=cfg.solver,
                        rtol=cfg.rtol,
                        atol=cfg.atol, max_steps=cfg.max_steps)  # fmt: skip
    xs = np.asarray(sol.ys[0][1:])
    grids["solver_steps"] = int(sol.stats.num_steps)

    def at(ts):
        return xs[np.searchsorted(union, ts)]

    return grids, at


def iterates_vs_ode(p: dict, grids: dict, at: Callable, cfg: DictConfig) -> dict:
    """Per step size: `max_k ‖x_k − X(k√s)‖ / ‖x₀ − x*‖` over `k√s ≤ T`, and its order."""
    scale = float(jnp.linalg.norm(p["x0"] - p["x_star"]))
    errors = []
    for s_l, ts in grids["steps"].items():
        xs = nesterov_iterates(p["grad"], p["x0"], step=s_l / p["lipschitz"], num_steps=len(ts))
        errors.append(float(np.max(np.linalg.norm(np.asarray(xs[1:]) - at(ts), axis=1)) / scale))
    root_s = np.sqrt(np.asarray(cfg.steps))
    return {"max_rel_gap": {f"s_{s:g}": e for s, e in zip(cfg.steps, errors, strict=True)},
            "order_in_sqrt_s": _slope(np.log(root_s), np.log(errors))}  # fmt: skip


def bessel_check(p: dict, ts: np.ndarray, sol_x) -> float:
    """The Nesterov ODE on the quadratic against `x* + Q diag(2J₁(√λt)/(√λt)) Qᵀ(x₀ − x*)`."""
    u = np.sqrt(np.asarray(p["lam"]))[None, :] * np.asarray(ts)[:, None]
    q = np.asarray(p["q"])
    modes = (q.T @ np.asarray(p["x0"] - p["x_star"]))[None, :] * 2 * scipy.special.j1(u) / u
    exact = np.asarray(p["x_star"]) + modes @ q.T
    return float(np.max(np.abs(np.asarray(sol_x) - exact)))


def flows_and_rates(p: dict, grids: dict, at: Callable, cfg: DictConfig) -> dict:
    """Nesterov ODE and gradient flow over `[1e-2, t_b]`: SBC's bound, and log-log slopes over
    the window `[t_a, t_b]`."""
    r = cfg.rates
    t_window = grids["window"]
    ts = np.concatenate([grids["early"], t_window])
    f_batch = jax.jit(jax.vmap(p["f"]))
    r0 = float(jnp.sum((p["x0"] - p["x_star"]) ** 2))
    sol_x = at(ts)
    gap = np.asarray(f_batch(jnp.asarray(sol_x))) - p["f_star"]
    gf = odeint(lambda t, x, args: -p["grad"](x), p["x0"], np.concatenate([[0.0], ts]),
                solver=cfg.solver, rtol=cfg.rtol, atol=cfg.atol, adjoint="direct",
                max_steps=cfg.max_steps)  # fmt: skip
    gf_gap = np.asarray(f_batch(gf.ys[1:])) - p["f_star"]
    window = slice(len(grids["early"]), None)
    # Nesterov's iterates at s = nesterov_step / L over the same window of t = k√s
    s = r.nesterov_step / p["lipschitz"]
    num = int(np.ceil(r.t_b / np.sqrt(s)))
    xs = nesterov_iterates(p["grad"], p["x0"], step=s, num_steps=num)
    k = np.arange(num + 1)
    in_window = (k * np.sqrt(s) >= r.t_a) & (k * np.sqrt(s) <= r.t_b)
    it_gap = np.asarray(f_batch(xs)) - p["f_star"]
    lw = np.log(t_window)
    return {
        "ts": ts, "nesterov_gap": gap, "gradient_flow_gap": gf_gap, "r0": r0, "sol_x": sol_x,
        "bound_ratio_max": float(np.max(gap * ts**2 / (2 * r0))),
        "slope_nesterov_ode": _slope(lw, np.log(np.maximum(gap[window], 1e-300))),
        "slope_gradient_flow": _slope(lw, np.log(np.maximum(gf_gap[window], 1e-300))),
        "slope_nesterov_iterates": _slope(np.log(k[in_window]),
                                          np.log(np.maximum(it_gap[in_window], 1e-300))),
        "solver_steps": grids["solver_steps"],
    }  # fmt: skip


def heavy_ball_rate(p: dict, cfg: DictConfig) -> dict:
    """`Ẍ + 2√μ Ẋ + ∇f = 0`: the fitted linear rate `−d log(f − f*)/dt` over `[t_a, hb_t_b]`."""
    r = cfg.rates
    mu = p["mu"]
    ts = np.linspace(0.0, r.hb_t_b, 601)
    sol = heavy_ball_flow(p["grad"], p["x0"], ts, damping=2 * np.sqrt(mu), solver=cfg.solver,
                          rtol=cfg.rtol,
                          atol=cfg.atol, max_steps=cfg.max_steps)  # fmt: skip
    gap = np.asarray(jax.jit(jax.vmap(p["f"]))(sol.ys[0])) - p["f_star"]
    window = ts >= r.t_a
    rate = -_slope(ts[window], np.log(np.maximum(gap[window], 1e-300)))
    return {"ts": ts, "gap": gap, "rate": rate, "rate_over_sqrt_mu": rate / np.sqrt(mu)}


def counterexample(key, cfg: DictConfig) -> dict:
    """Lessard et al.'s function: heavy ball (tuned) cycles, Nesterov converges, the heavy-ball
    ODE converges, and heavy ball with smaller steps at the ODE's damping converges."""
    c = cfg.counterexample
    lip, mu = 25.0, 1.0
    kappa = lip / mu
    alpha = 4 / (np.sqrt(lip) + np.sqrt(mu)) ** 2
    beta = ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2
    x0 = jax.random.uniform(key, (1,), minval=c.x0_low, maxval=c.x0_high)
    hb = np.asarray(heavy_ball_iterates(lessard_gradient, x0, step=alpha, momentum=beta,
                                        num_steps=c.num_steps)[:, 0])  # fmt: skip
    nag = np.asarray(nesterov_iterates(lessard_gradient, x0, step=1 / lip,
                                       momentum=(np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1),
                                       num_steps=c.num_steps)[:, 0])  # fmt: skip
    damping = (1 - beta) / np.sqrt(alpha)
    ts = np.linspace(0.0, c.ode_t1, 2001)
    ode = heavy_ball_flow(lessard_gradient, x0, ts, damping=float(damping), solver="tsit5",
                          rtol=1e-8, atol=1e-10, max_steps=cfg.max_steps)  # fmt: skip
    ode_x = np.asarray(ode.ys[0][:, 0])
    # heavy ball at α/2^j with β_j = 1 − a√(α/2^j): the same ODE, finer steps
    ladder = []
    for j in range(c.halvings + 1):
        a_j = alpha / 2**j
        xs = heavy_ball_iterates(lessard_gradient, x0, step=a_j,
                                 momentum=1 - damping * np.sqrt(a_j),
                                 num_steps=int(np.ceil(c.num_steps * 2 ** (j / 2))))  # fmt: skip
        ladder.append({"step": a_j, "final_abs_x": float(jnp.max(jnp.abs(xs[-10:])))})
    converged = [row["step"] for row in ladder if row["final_abs_x"] < 1e-8]
    # the heavy-ball map on each quadratic piece (curvature h): [[1 + β − αh, −β], [1, 0]]
    radii = [float(np.max(np.abs(np.linalg.eigvals([[1 + beta - alpha * h, -beta], [1, 0]]))))
             for h in (25.0, 1.0)]  # fmt: skip
    tail = hb[-3:]
    return {
        "x0": float(x0[0]), "alpha": alpha, "beta": beta, "damping": float(damping),
        "hb": hb, "nag": nag, "ode_t": ts, "ode_x": ode_x,
        "heavy_ball_cycle": [float(v) for v in np.sort(tail)],
        "heavy_ball_period3_residual": float(np.max(np.abs(hb[-3:] - hb[-6:-3]))),
        "heavy_ball_final_abs_x": float(np.max(np.abs(hb[-10:]))),
        "heavy_ball_final_f": float(np.max(np.asarray(lessard_f(jnp.asarray(hb[-10:]))))),
        "nesterov_final_abs_x": float(np.max(np.abs(nag[-10:]))),
        "heavy_ball_ode_final_abs_x": float(np.abs(ode_x[-1])),
        "heavy_ball_piece_spectral_radius": max(radii),
        "largest_converging_step": max(converged) if converged else None,
        "step_ladder": ladder,
    }  # fmt: skip


# ----------------------------------------------------------------------------- run


@register("acceleration_ode", AccelerationOdeConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Nesterov and heavy ball against their ODEs; rates; Lessard et al.'s counterexample."""
    with jax.enable_x64(True):  # gaps down to 1e-10 and f − f* to 1e-20
        return _run(cfg, run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    k_q, k_l, k_hb, k_c = jax.random.split(jax.random.key(cfg.seed), 4)
    q = cfg.quadratic
    quad = quadratic(k_q, q.dim, q.mu, q.lipschitz)
    logi = logistic(k_l, cfg)
    quad_grids, quad_at = nesterov_solution(quad, cfg)
    logi_grids, logi_at = nesterov_solution(logi, cfg)
    quad_gap = iterates_vs_ode(quad, quad_grids, quad_at, cfg)
    logi_gap = iterates_vs_ode(logi, logi_grids, logi_at, cfg)
    quad_rates = flows_and_rates(quad, quad_grids, quad_at, cfg)
    logi_rates = flows_and_rates(logi, logi_grids, logi_at, cfg)
    bessel_t = quad_rates["ts"] <= cfg.horizon / np.sqrt(q.lipschitz)
    bessel = bessel_check(quad, quad_rates["ts"][bessel_t], quad_rates["sol_x"][bessel_t])
    kappa = cfg.rates.kappa
    hb_quad = heavy_ball_rate(quadratic(k_hb, q.dim, q.lipschitz / kappa, q.lipschitz), cfg)
    hb_logi = heavy_ball_rate(logistic(k_l, cfg, l2=cfg.logistic.l2), cfg)
    cx = counterexample(k_c, cfg)

    rates = [
        {"method": "gradient flow", "problem": "quadratic", "measured_slope":
         quad_rates["slope_gradient_flow"], "theory": "t^-1 (log-uniform spectrum)"},
        {"method": "Nesterov ODE", "problem": "quadratic", "measured_slope":
         quad_rates["slope_nesterov_ode"], "theory": "t^-2"},
        {"method": "Nesterov iterates", "problem": "quadratic", "measured_slope":
         quad_rates["slope_nesterov_iterates"], "theory": "k^-2"},
        {"method": "gradient flow", "problem": "logistic", "measured_slope":
         logi_rates["slope_gradient_flow"], "theory": "bound t^-1"},
        {"method": "Nesterov ODE", "problem": "logistic", "measured_slope":
         logi_rates["slope_nesterov_ode"], "theory": "bound t^-2"},
        {"method": "heavy-ball ODE a = 2√μ", "problem": f"quadratic κ = {kappa:g}",
         "measured_rate_over_sqrt_mu": hb_quad["rate_over_sqrt_mu"], "theory": ">= 1; 2"},
        {"method": "heavy-ball ODE a = 2√μ", "problem": "ℓ2 logistic",
         "measured_rate_over_sqrt_mu": hb_logi["rate_over_sqrt_mu"], "theory": ">= 1"},
    ]  # fmt: skip
    slow = [cx["heavy_ball_final_abs_x"], cx["nesterov_final_abs_x"]]
    summary = {
        "order_quadratic": quad_gap["order_in_sqrt_s"],
        "order_logistic": logi_gap["order_in_sqrt_s"],
        "max_rel_gap_quadratic": quad_gap["max_rel_gap"],
        "max_rel_gap_logistic": logi_gap["max_rel_gap"],
        "ode_vs_bessel_max_abs_error": bessel,
        "bound_ratio_max_quadratic": quad_rates["bound_ratio_max"],
        "bound_ratio_max_logistic": logi_rates["bound_ratio_max"],
        "slope_nesterov_ode_quadratic": quad_rates["slope_nesterov_ode"],
        "slope_gradient_flow_quadratic": quad_rates["slope_gradient_flow"],
        "slope_nesterov_iterates_quadratic": quad_rates["slope_nesterov_iterates"],
        "slope_nesterov_ode_logistic": logi_rates["slope_nesterov_ode"],
        "hb_rate_over_sqrt_mu_quadratic": hb_quad["rate_over_sqrt_mu"],
        "hb_rate_over_sqrt_mu_logistic": hb_logi["rate_over_sqrt_mu"],
        "rates": rates,
        "counterexample": {k: v for k, v in cx.items() if k not in ("hb", "nag", "ode_t", "ode_x")},
        "heavy_ball_cycles": bool(cx["heavy_ball_period3_residual"] < 1e-8
                                  and cx["heavy_ball_final_abs_x"] > 0.1),
        "nesterov_converges": bool(slow[1] < 1e-8),
        "heavy_ball_ode_converges": bool(cx["heavy_ball_ode_final_abs_x"] < 1e-6),
        "logistic_newton_grad_norm": logi["grad_norm_at_star"],
        "nesterov_ode_solver_steps": quad_rates["solver_steps"],
    }  # fmt: skip
    summary["target_met"] = bool(
        0.8 <= summary["order_quadratic"] <= 1.2
        and 0.8 <= summary["order_logistic"] <= 1.2
        and summary["bound_ratio_max_quadratic"] <= 1
        and summary["bound_ratio_max_logistic"] <= 1
        and summary["heavy_ball_cycles"]
        and summary["nesterov_converges"]
        and summary["heavy_ball_ode_converges"]
    )
    if cfg.figures:
        _figures(run_dir, quad_gap, logi_gap, quad_rates, logi_rates, hb_quad, hb_logi, cx, cfg)
    return summary


def _figures(run_dir, quad_gap, logi_gap, quad_rates, logi_rates, hb_quad, hb_logi, cx, cfg):
    fig = Figure(figsize=(12, 4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for name, g, marker in (("quadratic", quad_gap, "o-"), ("logistic", logi_gap, "s-")):
        values = list(g["max_rel_gap"].values())
        ax1.loglog(np.sqrt(cfg.steps), values, marker, label=f"{name}: slope "
                   f"{g['order_in_sqrt_s']:.2f}")  # fmt: skip
    ax1.set(xlabel="√(s L)", ylabel="max ‖x_k − X(k√s)‖ / ‖x₀ − x*‖",
            title="Nesterov iterates → SBC ODE")  # fmt: skip
    ax1.legend(fontsize=8)
    for name, r, color in (("quadratic", quad_rates, "C0"), ("logistic", logi_rates, "C1")):
        ax2.loglog(r["ts"], r["nesterov_gap"], color=color, label=f"{name}: Nesterov ODE")
        ax2.loglog(r["ts"], r["gradient_flow_gap"], color=color, ls=":", label="gradient flow")
        ax2.loglog(r["ts"], 2 * r["r0"] / r["ts"] ** 2, color=color, ls="--", lw=0.8,
                   label="2‖x₀ − x*‖²/t²")  # fmt: skip
    ax2.axvspan(cfg.rates.t_a, cfg.rates.t_b, color="grey", alpha=0.1)
    ax2.set(xlabel="t", ylabel="f(X(t)) − f*", ylim=(1e-12, None), title="rates along the ODEs")
    ax2.legend(fontsize=7)
    for name, h in (("quadratic κ = 100", hb_quad), ("ℓ2 logistic", hb_logi)):
        ax3.semilogy(h["ts"], h["gap"], label=f"{name}: rate/√μ = {h['rate_over_sqrt_mu']:.2f}")
    ax3.set(xlabel="t", ylabel="f − f*", title="heavy-ball ODE, a = 2√μ")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "ode_vs_iterates.png", dpi=110)

    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    k = np.arange(cx["hb"].shape[0])
    ax1.plot(k[:60], cx["hb"][:60], "C3.-", ms=3, lw=0.7, label="heavy ball (tuned α, β)")
    ax1.plot(k[:60], cx["nag"][:60], "C0.-", ms=3, lw=0.7, label="Nesterov (1/L, (√κ−1)/(√κ+1))")
    ax1.set(xlabel="k", ylabel="x_k", title=f"Lessard et al. 2016, x₀ = {cx['x0']:.3f}")
    ax1.legend(fontsize=8)
    ax2.plot(cx["ode_t"], cx["ode_x"], "k-", lw=1)
    ax2.set(xlabel="t", ylabel="X(t)",
            title=f"heavy-ball ODE, a = (1 − β)/√α = {cx['damping']:.3f}: converges")  # fmt: skip
    fig.tight_layout()
    fig.savefig(run_dir / "heavy_ball_counterexample.png", dpi=110)

"""Hypergradients four ways: implicit vs unrolled vs truncated vs Neumann, side by side.

What is measured: for each bilevel problem, number of inner iterations K in {10, 100, 1000}
and mode of `jaxdyn.implicit.hypergradient`, the wall time of ONE hypergradient
`theta -> dL/dtheta` (inner solve + gradient), the temporary memory of its compiled program
(`jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes`: XLA's scratch
buffers, not the arguments or outputs), and the relative error `|g - g*| / |g*|` against
the exact hypergradient `g*`. Everything is float64 (x64 is enabled by this script).

Problems (synthetic data, generated here from `--seed`; the data are arguments of the
jitted function, not constants baked into it):

- `ridge`: n = 500 training and 200 validation rows, d = 50 features whose scales fall
  log-uniformly from 1 to 0.1 (so the inner problem is ill-conditioned enough that K = 100
  gradient steps do not converge), targets `X w_true + 0.1 noise`. Inner:
  `f(w, θ) = ½ mean((X w - y)²) + ½ Σ exp(θ_j) w_j²` with one log-λ per feature,
  `θ_j = log 0.01 + ½ linspace(-1, 1)_j`; outer: `½ mean((X_val w - y_val)²)`. Exact
  hypergradient: `jax.grad` through the closed form `w* = solve(XᵀX/n + diag e^θ, Xᵀy/n)`.
- `logistic`: the same sizes, standard-normal features, labels `sign(X w_true + 0.5 noise)`
  in {-1, 1}. Inner: `f(w, θ) = mean(log(1 + exp(-y ⊙ X w))) + ½ e^θ |w|²` with a single
  log-λ, `θ = log 0.01`; outer: the validation log-loss. Exact hypergradient: `w*` by 30
  undamped Newton steps from 0 with dense Hessian solves (checked: `|∇ₓf(w*)| ≤ 1e-12`),
  then the implicit-function formula `g* = -∂²_{θx}f(w*)ᵀ (∇²ₓf(w*))⁻¹ ∇ₓL(w*)` with a dense
  Hessian (`jax.hessian`, `jnp.linalg.solve`); no jaxdyn code is involved.

Inner problem: `InnerProblem(f, x0=0, step_size=1/L, max_steps=K, tol=1e-8)`, i.e. K steps of
gradient descent with `L` the smoothness constant computed from the data at θ
(`λ_max(XᵀX/n) + max λ` for ridge, `λ_max(XᵀX/n)/4 + λ` for logistic). Condition numbers
(printed) are about 40 and 10-40, so K = 10 never converges, K = 100 does not for ridge and
K = 1000 does for both (`converged` is jaxdyn's flag, `|∇ₓf(x_K)| ≤ 1e-8`).

Modes (all with `on_failure="return"`, so unconverged inner problems still give a gradient):

- `implicit`: implicit function theorem, linear system by `cg` (jaxdyn's default, tol 1e-10);
- `unrolled`: backpropagation through all K inner steps;
- `truncated(10)`: backpropagation through the last 10 steps only (Shaban et al. 2019): 10
  is the smallest K here, so at K = 10 it is the same computation as `unrolled`;
- `neumann(20)`: implicit, with the inverse Hessian replaced by a 20-term Neumann series of
  step 1/L (Lorraine et al. 2020): a typical budget, which on these conditioning leaves a
  truncation bias of roughly `(1 - 1/κ)^20`, i.e. tens of percent (shown in the table);
- `forward only`: a reference, not a hypergradient: the K inner steps alone
  (`InnerProblem.run`), the floor under every mode's time (each must run them).

How: each (problem, K, mode) is one `jax.jit` function `(θ, data) -> (g, info)` compiled once
with `.lower(...).compile()`; that compiled executable gives the memory analysis and is the
one timed (compile time reported). After `--warmup` untimed calls each, all contenders of a
problem are timed round-robin (one call of each per round, in a shuffled order) so that
noise on the shared machine falls on all alike. Reported: median ms and IQR over `--reps`
rounds; for the targets also the median of per-round ratios (paired, less sensitive to
drifting load).

Targets (issue): implicit ≥ 5× faster than unrolled at K = 1000; implicit's memory flat in
K (here: temp memory at K = 1000 ≤ 1.1 × that at K = 10), shown next to unrolled's growth.

Run: `python benchmarks/hypergradient.py [--reps 50] [--quick]`. Writes
`benchmarks/out/hypergradient.json`.
"""

import argparse
import dataclasses
import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import time_round_robin

from jaxdyn._environment import machine, versions
from jaxdyn.implicit import InnerProblem, hypergradient

OUT = Path(__file__).resolve().parent / "out" / "hypergradient.json"
N_TRAIN, N_VAL, DIM = 500, 200, 50
ITERATIONS = (10, 100, 1000)
MODES = ("implicit", "implicit (lbfgs)", "unrolled", "truncated(10)", "neumann(20)")
REFERENCE = "forward only"
INNER_TOL = 1e-8
FLAT = 1.1  # "flat": temp memory at K=1000 at most this times that at K=10
SPEEDUP = 5.0


# --------------------------------------------------------------------------- problems


@dataclasses.dataclass
class Problem:
    name: str
    objective: Callable  # objective(w, θ, data)
    outer: Callable  # outer(w, θ, data)
    theta: jax.Array
    data: dict
    smoothness: float
    condition: float
    exact: jax.Array
    check: dict
    workload: dict


def ridge_problem(seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    scales = np.logspace(0, -1, DIM)
    w_true = rng.standard_normal(DIM)
    X, XV = (rng.standard_normal((m, DIM)) * scales for m in (N_TRAIN, N_VAL))
    y, yv = (A @ w_true + 0.1 * rng.standard_normal(len(A)) for A in (X, XV))
    data = {k: jnp.asarray(v) for k, v in dict(X=X, y=y, XV=XV, yv=yv).items()}
    theta = jnp.log(0.01) + 0.5 * jnp.linspace(-1.0, 1.0, DIM)

    def objective(w, theta, data):
        r = data["X"] @ w - data["y"]
        return 0.5 * jnp.mean(r**2) + 0.5 * jnp.sum(jnp.exp(theta) * w**2)

    def outer(w, theta, data):
        return 0.5 * jnp.mean((data["XV"] @ w - data["yv"]) ** 2)

    gram = data["X"].T @ data["X"] / N_TRAIN

    def w_star(theta):
        return jnp.linalg.solve(gram + jnp.diag(jnp.exp(theta)), data["X"].T @ data["y"] / N_TRAIN)

    exact = jax.grad(lambda t: outer(w_star(t), t, data))(theta)
    hessian = gram + jnp.diag(jnp.exp(theta))
    smoothness = float(jnp.linalg.eigvalsh(gram).max() + jnp.exp(theta).max())
    mu = float(jnp.linalg.eigvalsh(hessian).min())
    return Problem(
        "ridge",
        objective,
        outer,
        theta,
        data,
        smoothness,
        smoothness / mu,
        exact,
        {"exact": "closed form, jax.grad through jnp.linalg.solve"},
        {
            "n_train": N_TRAIN,
            "n_val": N_VAL,
            "d": DIM,
            "feature_scales": "logspace(0, -1, d)",
            "noise": 0.1,
            "theta": "log(0.01) + 0.5 * linspace(-1, 1, d) (one log-lambda per feature)",
            "inner": "0.5 mean((X w - y)^2) + 0.5 sum(exp(theta) w^2)",
            "outer": "0.5 mean((X_val w - y_val)^2)",
        },
    )


def logistic_problem(seed: int) -> Problem:
    rng = np.random.default_rng(seed + 1)
    w_true = rng.standard_normal(DIM)
    X, XV = (rng.standard_normal((m, DIM)) for m in (N_TRAIN, N_VAL))
    y, yv = (np.sign(A @ w_true + 0.5 * rng.standard_normal(len(A))) for A in (X, XV))
    data = {k: jnp.asarray(v) for k, v in dict(X=X, y=y, XV=XV, yv=yv).items()}
    theta = jnp.log(jnp.asarray(0.01))

    def objective(w, theta, data):
        margins = data["y"] * (data["X"] @ w)
        return jnp.mean(jnp.logaddexp(0.0, -margins)) + 0.5 * jnp.exp(theta) * jnp.sum(w**2)

    def outer(w, theta, data):
        return jnp.mean(jnp.logaddexp(0.0, -data["yv"] * (data["XV"] @ w)))

    # Reference solution: undamped Newton with dense Hessians (strongly convex, from 0).
    grad_x = jax.grad(objective)
    hess_x = jax.hessian(objective)
    w = jnp.zeros(DIM)
    for _ in range(30):
        w = w - jnp.linalg.solve(hess_x(w, theta, data), grad_x(w, theta, data))
    residual = float(jnp.linalg.norm(grad_x(w, theta, data)))
    assert residual <= 1e-12, f"Newton reference did not converge: |grad| = {residual:.2e}"
    # Implicit function theorem with a dense Hessian solve: g* = ∂θL - (∂²θx f)ᵀ H⁻¹ ∇ₓL.
    hessian = hess_x(w, theta, data)
    v = jnp.linalg.solve(hessian, jax.grad(outer)(w, theta, data))
    cross = jax.grad(lambda t: jnp.vdot(grad_x(w, t, data), v))(theta)
    exact = jax.grad(outer, argnums=1)(w, theta, data) - cross

    gram = data["X"].T @ data["X"] / N_TRAIN
    smoothness = float(jnp.linalg.eigvalsh(gram).max() / 4 + jnp.exp(theta))
    mu = float(jnp.linalg.eigvalsh(hessian).min())
    return Problem(
        "logistic",
        objective,
        outer,
        theta,
        data,
        smoothness,
        smoothness / mu,
        exact,
        {
            "exact": "30 Newton steps + implicit-function formula with dense Hessian solve",
            "newton_grad_norm": residual,
        },
        {
            "n_train": N_TRAIN,
            "n_val": N_VAL,
            "d": DIM,
            "labels": "sign(X w_true + 0.5 noise)",
            "theta": "log(0.01) (a single log-lambda)",
            "inner": "mean(log(1 + exp(-y X w))) + 0.5 exp(theta) |w|^2",
            "outer": "mean(log(1 + exp(-y_val X_val w)))",
        },
    )


# --------------------------------------------------------------------------- contenders


def make_function(problem: Problem, iterations: int, mode: str) -> Callable:
    """`(θ, data) -> (gradient, info)`; for the reference, `(θ, data) -> x_K`."""

    def inner(data):
        return InnerProblem(
            lambda w, t: problem.objective(w, t, data),
            jnp.zeros(DIM),
            step_size=1.0 / problem.smoothness,
            max_steps=iterations,
            tol=INNER_TOL,
            solver="lbfgs" if mode == "implicit (lbfgs)" else "gradient_descent",
        )

    if mode == REFERENCE:
        return lambda theta, data: inner(data).run(jnp.zeros(DIM), theta, iterations)

    def hypergrad(theta, data):
        (_, grad), info = hypergradient(
            lambda w, t: problem.outer(w, t, data),
            inner(data),
            theta,
            mode="implicit" if mode == "implicit (lbfgs)" else mode,
            on_failure="return",
        )
        return grad, info

    return hypergrad


def memory_stats(compiled) -> dict:
    """The compiled program's memory analysis in bytes; None where unavailable."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        stats = None
    fields = ("temp", "argument", "output", "alias", "generated_code")
    return {
        f"{f}_bytes": None if stats is None else getattr(stats, f"{f}_size_in_bytes", None)
        for f in fields
    }


def contender(problem: Problem, iterations: int, mode: str) -> dict:
    args = (problem.theta, problem.data)
    start = time.perf_counter()
    compiled = jax.jit(make_function(problem, iterations, mode)).lower(*args).compile()
    compile_s = time.perf_counter() - start
    out = jax.block_until_ready(compiled(*args))
    row = {
        "problem": problem.name,
        "iterations": iterations,
        "mode": mode,
        "run": lambda: jax.block_until_ready(compiled(*args)),
        "compile_s": compile_s,
        **memory_stats(compiled),
        "rel_error": None,
        "converged": None,
        "inner_grad_norm": None,
    }
    if mode != REFERENCE:
        grad, info = out
        exact = problem.exact
        row["rel_error"] = float(jnp.linalg.norm(grad - exact) / jnp.linalg.norm(exact))
        row["converged"] = bool(info.converged)
        row["inner_grad_norm"] = float(info.error)
        row["gradient"] = np.atleast_1d(np.asarray(grad)).tolist()
    return row


# --------------------------------------------------------------------------- report


def kib(x):
    return None if x is None else x / 1024


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| K | mode | median ms | IQR ms | temp KiB | rel. error | converged | compile s |",
        "|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        conv = "–" if r["converged"] is None else ("yes" if r["converged"] else "no")
        lines.append(
            f"| {r['iterations']} | {r['mode']} | {r['median_ms']:.3f} "
            f"| {r['q25_ms']:.3f}–{r['q75_ms']:.3f} | {fmt(kib(r['temp_bytes']), '.1f')} "
            f"| {fmt(r['rel_error'], '.2e')} | {conv} | {r['compile_s']:.2f} |"
        )
    return "\n".join(lines)


def targets_for(rows: list[dict], times: dict) -> dict:
    by = {(r["iterations"], r["mode"]): r for r in rows}
    k_lo, k_hi = min(ITERATIONS), max(ITERATIONS)
    implicit, unrolled = by[(k_hi, "implicit")], by[(k_hi, "unrolled")]
    forward = by[(k_hi, REFERENCE)]
    speed = unrolled["median_ms"] / implicit["median_ms"]
    paired = float(np.median(np.asarray(times[(k_hi, "unrolled")]) / times[(k_hi, "implicit")]))
    targets = {
        f"implicit >= {SPEEDUP:g}x faster than unrolled at K={k_hi}": {
            "ratio": speed,
            "paired_ratio": paired,
            "implicit_over_forward_only": implicit["median_ms"] / forward["median_ms"],
            "unrolled_over_forward_only": unrolled["median_ms"] / forward["median_ms"],
            "met": speed >= SPEEDUP,
        }
    }
    lbfgs = by[(k_hi, "implicit (lbfgs)")]
    ratio = unrolled["median_ms"] / lbfgs["median_ms"]
    targets[f"implicit (lbfgs forward) >= {SPEEDUP:g}x faster than unrolled at K={k_hi}"] = {
        "ratio": ratio,
        "paired_ratio": float(
            np.median(np.asarray(times[(k_hi, "unrolled")]) / times[(k_hi, "implicit (lbfgs)")])
        ),  # fmt: skip
        "met": ratio >= SPEEDUP,
    }
    growth = {}
    for mode in MODES:
        lo, hi = by[(k_lo, mode)]["temp_bytes"], by[(k_hi, mode)]["temp_bytes"]
        growth[mode] = None if lo is None or hi is None or lo == 0 else hi / lo
    lo, hi = by[(k_lo, "implicit")]["temp_bytes"], by[(k_hi, "implicit")]["temp_bytes"]
    targets[f"implicit memory flat in K (K={k_hi} / K={k_lo} <= {FLAT:g})"] = {
        "ratio": growth["implicit"],
        "implicit_temp_bytes": {str(k_lo): lo, str(k_hi): hi},
        "unrolled_temp_bytes": {
            str(k_lo): by[(k_lo, "unrolled")]["temp_bytes"],
            str(k_hi): by[(k_hi, "unrolled")]["temp_bytes"],
        },
        "growth_by_mode": growth,
        "met": None if growth["implicit"] is None else growth["implicit"] <= FLAT,
    }
    return targets


def print_targets(name: str, targets: dict) -> None:
    for target, t in targets.items():
        verdict = {True: "met", False: "NOT met", None: "unknown"}[t["met"]]
        if "paired_ratio" in t and "implicit_over_forward_only" not in t:
            detail = f"unrolled/implicit = {t['ratio']:.2f} (paired {t['paired_ratio']:.2f})"
        elif "paired_ratio" in t:
            detail = (
                f"unrolled/implicit = {t['ratio']:.2f} (paired {t['paired_ratio']:.2f}); "
                f"vs forward only: implicit {t['implicit_over_forward_only']:.2f}x, "
                f"unrolled {t['unrolled_over_forward_only']:.2f}x"
            )
        else:
            lo, hi = (kib(v) for v in t["implicit_temp_bytes"].values())
            ulo, uhi = (kib(v) for v in t["unrolled_temp_bytes"].values())
            others = ", ".join(f"{m} {fmt(g, '.2f')}x" for m, g in t["growth_by_mode"].items())
            detail = (
                f"implicit {fmt(lo, '.1f')} -> {fmt(hi, '.1f')} KiB; unrolled "
                f"{fmt(ulo, '.1f')} -> {fmt(uhi, '.1f')} KiB; growth: {others}"
            )
        print(f"target [{name}] {target}: {detail} -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50, help="timed round-robin rounds (>= 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 reps, 1 warm-up")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.warmup = 3, 1

    jax.config.update("jax_enable_x64", True)
    start_all = time.perf_counter()
    problems = [ridge_problem(args.seed), logistic_problem(args.seed)]
    results, all_targets, tables, problem_info = [], {}, {}, {}
    for problem in problems:
        print(
            f"\n## {problem.name}: d={DIM}, n={N_TRAIN}, L={problem.smoothness:.4g}, "
            f"condition number at the optimum {problem.condition:.1f}, "
            f"|g*| = {float(jnp.linalg.norm(problem.exact)):.3e}"
        )
        contenders = [
            contender(problem, k, mode) for k in ITERATIONS for mode in (*MODES, REFERENCE)
        ]
        print(f"compiled {len(contenders)} functions; timing {args.reps} round-robin rounds ...")
        time_round_robin(contenders, args.reps, args.warmup, args.seed)
        rows, times = [], {}
        for c in contenders:
            ms = np.asarray(c.pop("times")) * 1e3
            c.pop("run")
            times[(c["iterations"], c["mode"])] = ms
            c.update(
                median_ms=float(np.median(ms)),
                q25_ms=float(np.percentile(ms, 25)),
                q75_ms=float(np.percentile(ms, 75)),
                min_ms=float(ms.min()),
                reps=len(ms),
                times_ms=[float(x) for x in ms],
            )
            rows.append(c)
        table = markdown(rows)
        print()
        print(table)
        print()
        targets = targets_for(rows, times)
        print_targets(problem.name, targets)
        results += rows
        tables[problem.name] = table
        all_targets[problem.name] = targets
        problem_info[problem.name] = {
            "workload": problem.workload,
            "smoothness_L": problem.smoothness,
            "step_size": 1.0 / problem.smoothness,
            "condition_number": problem.condition,
            "exact_hypergradient": np.atleast_1d(np.asarray(problem.exact)).tolist(),
            "reference": problem.check,
        }
    elapsed = time.perf_counter() - start_all

    record = {
        "benchmark": "hypergradient",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "dtype": "float64",
        "iterations": list(ITERATIONS),
        "modes": list(MODES),
        "reference_mode": REFERENCE,
        "inner_tol": INNER_TOL,
        "linear_solver": "cg (tol 1e-10), jaxdyn default",
        "memory_note": (
            "temp_bytes = memory_analysis().temp_size_in_bytes of the compiled "
            "(theta, data) -> (gradient, info) program: XLA scratch, excluding arguments "
            "and outputs"
        ),
        "problems": problem_info,
        "reps": args.reps,
        "warmup": args.warmup,
        "quick": args.quick,
        "total_wall_s": elapsed,
        "results": results,
        "targets": all_targets,
        "tables_markdown": tables,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\ntotal {elapsed:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()

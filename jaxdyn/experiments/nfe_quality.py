"""NFE against sample quality for flow matching with independent and minibatch-OT couplings.

Question (issue 7 §4.3): does the minibatch optimal-transport coupling (OT-CFM; Tong et al.
2023; Pooladian et al. 2023), whose conditional paths are straighter, give a flow that needs
fewer function evaluations (NFE) for the same sample quality than independent-coupling flow
matching (Lipman et al. 2023; Liu et al. 2023)?

Training. For each dataset (`jaxdyn.data.toy2d`, base `N(0, I)`) two velocity fields with the
same architecture (`generative_toy2d.build_model`: `jaxdyn.models.MLPField` with Fourier
time features), the same initialisation, the same
optimiser and the same random draws are trained on `velocity_loss` for the linear interpolant
with `γ = 0`, `x_t = (1 − t) x0 + t x1`: `independent` pairs each fresh `x0` with the fresh
`x1` of the same index; `ot` first re-pairs the minibatch along its entropic OT plan
(`ot_coupling`, ott-jax Sinkhorn, `coupling.epsilon` relative to the mean cost).

Evaluation, per dataset and coupling, on one fixed set of `num_samples` base points (the same
for both couplings and every solver) and one fixed set of data samples:

- W2² (exact OT, POT) of the samples at `t = 1` against the data, with the data-vs-data floor
  at that size, and the NFE (`Stats.num_fevals`), for adaptive dopri5 at each tolerance of
  `evaluation.tolerances` (`rtol = atol`) and for fixed-step `euler`, `midpoint` and classical
  `rk4` (`jaxdyn.solve.SOLVERS`' classical RK4, 4 evaluations a step) at each of
  `evaluation.step_counts`;
- NLL (nats) of fresh data by `log_likelihood` (exact divergence) at the reference tolerance
  `evaluation.reference_tol`;
- straightness of the learned flow, by fixed-step RK4 with `evaluation.reference_steps` steps:
  the transport cost `E|x(1) − x(0)|²`, the kinetic energy `E ∫ |b(t, x(t))|² dt`, and their
  ratio `S = E|x(1) − x(0)|² / E ∫|b|² dt ∈ (0, 1]` (Cauchy–Schwarz; 1 iff every path is a
  straight line traversed at constant speed); and the deviation of one Euler step from the
  accurate endpoint, `E|x(0) + b(0, x(0)) − x(1)|²` (zero for straight paths).

Answer. `steps_to_quality`: for every solver, the fewest NFE at which a coupling's W2² is
within `quality_factor ×` the data floor (or `floor + quality_margin`, whichever is larger) of
its own accurate-solve W2² — the NFE at which the solver error stops mattering — and the
ratio of those NFE between the couplings. Figure `w2_vs_nfe.png`: W2² against NFE per coupling
and solver (one panel per dataset, floor dashed).
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from ..config import (
    ConfigError,
    TrainConfig,
    at_least,
    distinct_names,
    positive,
    positive_list,
    section,
)
from ..data import toy2d
from ..generative import (
    LinearInterpolant,
    log_likelihood,
    ot_coupling,
    standard_normal,
    velocity_loss,
)
from ..metrics import wasserstein2_squared
from ..plotting import Figure
from ..solve import odeint
from ..train import fit, make_optimizer
from ._records import append_result, start_results, w2_squared
from ._registry import register
from .generative_toy2d import ToyModelConfig, build_model

COUPLINGS = ("independent", "ot")
DATASETS = ("eight_gaussians", "checkerboard", "moons", "circles")
FIXED_SOLVERS = ("euler", "midpoint", "rk4")


# --- training ---------------------------------------------------------------------------------


def _coupled_loss(dataset: str, coupling: str, batch_size: int, epsilon: float):
    """Mean `velocity_loss` of the linear interpolant (γ = 0) on fresh `x0 ~ N(0, I)` and data
    `x1`, paired independently or along the minibatch's entropic OT plan."""
    interpolant = LinearInterpolant("zero")

    def loss(model, batch, key):
        k_data, k_base, k_pair, k_loss = jax.random.split(key, 4)
        x1 = toy2d(dataset, batch_size, key=k_data)
        x0 = jax.random.normal(k_base, x1.shape, x1.dtype)
        if coupling == "ot":
            x0, x1 = ot_coupling(x0, x1, key=k_pair, epsilon=epsilon)
        return jnp.mean(velocity_loss(model, interpolant, x0, x1, key=k_loss))

    return loss


# --- evaluation -------------------------------------------------------------------------------

_draw = jax.jit(toy2d, static_argnums=(0, 1))  # one compilation per (name, n), not per op


@eqx.filter_jit
def _log_p(model, x, tol: float):
    """`log p(x)` of the flow from `N(0, I)` (exact divergence, dopri5 at `rtol = atol = tol`)."""
    return log_likelihood(model, x, standard_normal(2).log_prob, rtol=tol, atol=tol).value


@eqx.filter_jit
def _adaptive(model, x0, tol):
    ts = jnp.asarray([0.0, 1.0], x0.dtype)
    sol = odeint(model, x0, ts, solver="dopri5", rtol=tol, atol=tol, batch="joint",
                 max_steps=100_000)  # fmt: skip
    return sol.ys[:, -1], sol.stats.num_fevals


@eqx.filter_jit
def _fixed(model, x0, solver: str, steps: int):
    """Fixed steps of `solver` from `t = 0` to 1 on the state augmented by `∫|b|² dt` (free
    with the solve; one compilation serves the sweep and the straightness integrals). Returns
    the endpoints, `∫|b|² dt` per path, the NFE, and the one-Euler-step endpoint
    `x0 + b(0, x0)`."""

    def augmented(t, state, args):
        y, _ = state
        b = model(t, y, args)
        return b, jnp.sum(b**2)

    ts = jnp.asarray([0.0, 1.0], x0.dtype)
    state0 = (x0, jnp.zeros(x0.shape[0], x0.dtype))
    sol = odeint(augmented, state0, ts, solver=solver, dt0=1.0 / steps, batch="joint")
    one_step = x0 + jax.vmap(lambda y: model(jnp.zeros((), x0.dtype), y, None))(x0)
    return sol.ys[0][:, -1], sol.ys[1][:, -1], sol.stats.num_fevals, one_step


def _straightness_row(model, x0, steps: int) -> dict:
    x1, kinetic, _, one_step = (np.asarray(a, np.float64) for a in _fixed(model, x0, "rk4", steps))
    x0 = np.asarray(x0, np.float64)
    cost = float(np.mean(np.sum((x1 - x0) ** 2, axis=1)))
    energy = float(np.mean(kinetic))
    return {
        "transport_cost": cost,
        "kinetic_energy": energy,
        "straightness": cost / energy,
        "one_step_deviation": float(np.mean(np.sum((one_step - x1) ** 2, axis=1))),
    }


def _sweep(model, x0, reference, e: DictConfig) -> list[dict]:
    """W2² and NFE for every adaptive tolerance and fixed-step solver and step count."""
    rows = []
    for tol in e.tolerances:
        x1, nfe = _adaptive(model, x0, jnp.asarray(tol, x0.dtype))  # traced: one compile
        rows.append({"solver": "dopri5", "setting": float(tol), "nfe": int(nfe),
                     "w2": w2_squared(x1, reference)})  # fmt: skip
    for solver in e.fixed_solvers:
        for steps in e.step_counts:
            x1, _, nfe, _ = _fixed(model, x0, solver, int(steps))
            rows.append({"solver": solver, "setting": int(steps), "nfe": int(nfe),
                         "w2": w2_squared(x1, reference)})  # fmt: skip
    return rows


def steps_to_quality(
    sweep: list[dict], reference_w2: float, floor: float, factor: float, margin: float
) -> dict:
    """Per solver, the fewest NFE whose W2² is within `max(factor × floor, margin)` of the
    accurate solve's `reference_w2` (`None` if no setting is)."""
    tolerance = max(factor * floor, margin)
    out = {}
    for solver in dict.fromkeys(r["solver"] for r in sweep):
        good = [
            r["nfe"]
            for r in sweep
            if r["solver"] == solver and r["w2"] is not None and r["w2"] <= reference_w2 + tolerance
        ]
        out[solver] = min(good) if good else None
    return out


# --- config -----------------------------------------------------------------------------------


@dataclasses.dataclass
class NFECouplingConfig:
    epsilon: float = positive(0.05)  # Sinkhorn's entropic regularisation, relative to mean cost


@dataclasses.dataclass
class NFEEvaluationConfig:
    num_samples: int = at_least(2000, 2)
    num_nll: int = at_least(1000, 2)
    tolerances: list[float] = positive_list([1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "tolerances")
    fixed_solvers: list[str] = distinct_names(FIXED_SOLVERS, FIXED_SOLVERS)
    step_counts: list[int] = positive_list([1, 2, 4, 8, 16, 32], "step counts")
    reference_tol: float = positive(1e-5)  # dopri5 rtol = atol of the NLL and reference W2²
    reference_steps: int = at_least(200, 1)  # RK4 steps of the straightness integrals
    quality_factor: float = positive(0.5)  # "same quality": W2² within 0.5 x floor of ...
    quality_margin: float = positive(0.01)  # ... (or 0.01) the accurate solve's W2²


@dataclasses.dataclass
class NFEQualityConfig:
    experiment: str = "nfe_quality"
    seed: int = 0
    datasets: list[str] = distinct_names(["eight_gaussians", "checkerboard"], DATASETS)
    couplings: list[str] = distinct_names(COUPLINGS, COUPLINGS)
    model: ToyModelConfig = section(ToyModelConfig)
    coupling: NFECouplingConfig = section(NFECouplingConfig)
    train: TrainConfig = section(
        TrainConfig, steps=4000, batch_size=256, lr=2e-3, schedule="cosine", chunk=500
    )
    evaluation: NFEEvaluationConfig = section(NFEEvaluationConfig)


# --- the experiment ---------------------------------------------------------------------------


def _check(cfg: DictConfig) -> None:
    """What the schema cannot say: every step draws a fresh batch of `train.batch_size`."""
    if cfg.train.batch_size is None:
        raise ConfigError("train.batch_size must be a number: every step draws a fresh batch")


@register("nfe_quality", NFEQualityConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """NFE vs W2² for flow matching with independent vs minibatch-OT coupling (OT-CFM)."""
    root = jax.random.key(cfg.seed)
    optimizer = make_optimizer(cfg.train.optimizer, cfg.train.lr, schedule=cfg.train.schedule,
                               steps=cfg.train.steps)  # fmt: skip
    results_path, done = start_results(run_dir, ("dataset", "coupling"), resume=resume)
    for dataset in cfg.datasets:
        todo = [c for c in cfg.couplings if (dataset, c) not in done]
        if not todo:
            continue
        points = _evaluation_points(cfg, root, dataset)
        for coupling in todo:
            fit_dir = run_dir / "fits" / f"{dataset}-{coupling}"
            result = _train(cfg, root, dataset, coupling, optimizer, fit_dir, resume)
            row = {
                "dataset": dataset,
                "coupling": coupling,
                **_evaluate(result.model, points, cfg.evaluation),
                "final_loss": float(np.mean(result.losses[-100:])) if result.losses.size else None,
            }
            done[dataset, coupling] = row
            append_result(results_path, row)
    rows = {(d, c): done[d, c] for d in cfg.datasets for c in cfg.couplings}
    return _report(cfg, run_dir, rows)


def _train(cfg: DictConfig, root, dataset: str, coupling: str, optimizer, fit_dir: Path,
           resume: bool):  # fmt: skip
    """One coupling's fit: the same initialisation and draws for both couplings of a dataset."""
    model = build_model(cfg.model, key=jax.random.fold_in(root, 0))
    loss = _coupled_loss(dataset, coupling, cfg.train.batch_size, cfg.coupling.epsilon)
    train_key = jax.random.fold_in(jax.random.fold_in(root, 1), DATASETS.index(dataset))
    return fit(
        loss, model, jnp.zeros((1,)), optimizer, steps=cfg.train.steps, batch_size=None,
        key=train_key, chunk=cfg.train.chunk, run_dir=fit_dir,
        checkpoint_every=cfg.train.checkpoint_every, resume=resume,
    )  # fmt: skip


def _evaluation_points(cfg: DictConfig, root, dataset: str) -> dict:
    """One dataset's fixed evaluation sets, the same for both couplings: base points `x0`,
    data `reference` with its data-vs-data W2² `floor`, NLL `test` points and the base points
    `x_straight` of the straightness integrals."""
    e, dtype = cfg.evaluation, jnp.result_type(float)
    k_base, k_ref, k_ref2, k_test, k_straight = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(root, 2), DATASETS.index(dataset)), 5
    )
    reference = np.asarray(_draw(dataset, e.num_samples, key=k_ref))
    return {
        "x0": jax.random.normal(k_base, (e.num_samples, 2), dtype),
        "reference": reference,
        "floor": wasserstein2_squared(reference, _draw(dataset, e.num_samples, key=k_ref2)),
        "test": _draw(dataset, e.num_nll, key=k_test),
        "x_straight": jax.random.normal(k_straight, (e.num_samples, 2), dtype),
    }


def _evaluate(model, points: dict, e: DictConfig) -> dict:
    """The accurate solve's W2² and NFE, the NLL, the straightness and the solver sweep."""
    x0, reference, floor = points["x0"], points["reference"], points["floor"]
    x_ref, ref_nfe = _adaptive(model, x0, jnp.asarray(e.reference_tol, x0.dtype))
    reference_w2 = w2_squared(x_ref, reference)
    log_p = np.asarray(_log_p(model, points["test"], e.reference_tol), np.float64)
    sweep = _sweep(model, x0, reference, e)
    return {
        "w2_floor": float(floor),
        "reference_w2": reference_w2,
        "reference_nfe": int(ref_nfe),
        "nll": float(-log_p.mean()),
        "nll_se": float(log_p.std(ddof=1) / np.sqrt(e.num_nll)),
        **_straightness_row(model, points["x_straight"], e.reference_steps),
        "steps_to_quality": steps_to_quality(
            sweep, reference_w2, floor, e.quality_factor, e.quality_margin
        ),
        "sweep": sweep,
    }


def _report(cfg: DictConfig, run_dir: Path, rows: dict) -> dict:
    """Figure, table and the summary."""
    _figure(run_dir / "w2_vs_nfe.png", cfg, rows)
    comparison = _comparison(cfg, rows)
    table = _table(cfg, rows)
    (run_dir / "results.md").write_text("# nfe_quality: W2² against NFE\n\n" + table)
    fewer = [v["ot_needs_fewer"] for per in comparison.values() for v in per.values()]
    return {
        "results": {
            f"{d}/{c}": {k: v for k, v in r.items() if k != "sweep"} for (d, c), r in rows.items()
        },  # fmt: skip
        "sweeps": {f"{d}/{c}": r["sweep"] for (d, c), r in rows.items()},
        "nfe_to_quality": comparison,
        "ot_needs_fewer_steps": {
            "yes": sum(v is True for v in fewer),
            "no": sum(v is False for v in fewer),
            "undecided": sum(v is None for v in fewer),
        },
        "target": "measure whether OT-CFM needs fewer NFE than independent coupling for the "
        "same W2² (no numeric target)",
        "target_met": None,
        "table_markdown": table,
    }


def _comparison(cfg: DictConfig, rows: dict) -> dict:
    """Per dataset and solver: each coupling's NFE to quality and whether OT needs fewer."""
    if set(cfg.couplings) != set(COUPLINGS):
        return {}
    out = {}
    for dataset in cfg.datasets:
        ind = rows[dataset, "independent"]["steps_to_quality"]
        ot = rows[dataset, "ot"]["steps_to_quality"]
        per = {}
        for solver in ind:
            a, b = ind[solver], ot.get(solver)
            if a is None and b is None:
                fewer = None
            elif a is None or b is None:
                fewer = a is None
            else:
                fewer = None if a == b else b < a
            per[solver] = {"independent": a, "ot": b, "ot_needs_fewer": fewer}
        out[dataset] = per
    return out


def _table(cfg: DictConfig, rows: dict) -> str:
    lines = [
        "| dataset | coupling | NLL ± se | W2² accurate (floor) | straightness | transport cost |"
        " one-Euler-step dev. | NFE to quality |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, coupling), r in rows.items():
        nfe = ", ".join(f"{s} {n if n is not None else '>max'}"
                        for s, n in r["steps_to_quality"].items())  # fmt: skip
        lines.append(
            f"| {dataset} | {coupling} | {r['nll']:.3f} ± {r['nll_se']:.3f} | "
            f"{r['reference_w2']:.4f} ({r['w2_floor']:.4f}) | {r['straightness']:.4f} | "
            f"{r['transport_cost']:.3f} | {r['one_step_deviation']:.3f} | {nfe} |"
        )
    lines += ["", "W2² by solver and setting (NFE in brackets):", ""]
    for (dataset, coupling), r in rows.items():
        cells = ", ".join(
            f"{s['solver']}@{s['setting']:g} [{s['nfe']}] "
            + ("diverged" if s["w2"] is None else f"{s['w2']:.4f}")
            for s in r["sweep"]
        )
        lines.append(f"- {dataset} / {coupling}: {cells}")
    return "\n".join(lines) + "\n"


def _figure(path: Path, cfg: DictConfig, rows: dict) -> None:
    datasets = list(cfg.datasets)
    fig = Figure(figsize=(5.2 * len(datasets), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(datasets)))
    markers = {"dopri5": "o", "euler": "s", "midpoint": "^", "rk4": "D"}
    styles = {"independent": "-", "ot": "--"}
    for ax, dataset in zip(axes, datasets, strict=True):
        floor = None
        for i, coupling in enumerate(cfg.couplings):
            r = rows[dataset, coupling]
            floor = r["w2_floor"]
            for j, solver in enumerate(dict.fromkeys(s["solver"] for s in r["sweep"])):
                pts = sorted((s["nfe"], s["w2"]) for s in r["sweep"]
                             if s["solver"] == solver and s["w2"] is not None)  # fmt: skip
                if not pts:
                    continue
                nfe, w2 = zip(*pts, strict=True)
                ax.plot(nfe, w2, styles.get(coupling, ":"), marker=markers.get(solver, "x"),
                        color=f"C{j}", ms=4, lw=1.2, alpha=0.9 if i == 0 else 0.7,
                        label=f"{coupling} · {solver}")  # fmt: skip
        ax.axhline(floor, color="k", ls=":", lw=1, label="data-vs-data floor")
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="W2² to data",
               title=f"{dataset}: W2² vs NFE")  # fmt: skip
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)

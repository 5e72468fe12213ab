"""The implicit regularisation of dynamical stability in SGD (Wu & Su 2023, "The implicit
regularization of dynamical stability in stochastic gradient descent", ICML): GD against SGD
of several batch sizes at one learning rate, and the curvature of the minima they reach.

Setting. The fc-tanh network of `edge_of_stability` with one output (`depth` tanh hidden
layers of `width` units, PyTorch's default initialisation; the seed draws one initialisation
shared by every batch size), the square loss `L(θ) = (1/2n) Σ_i (f_θ(x_i) − y_i)²` with `y_i =
+1` for an even digit and `−1` for an odd one, on the first `n` standardised `load_digits`
images, trained for `train.steps` steps of `θ ← θ − η ∇L_ξ(θ)`, `L_ξ` the same loss averaged
over a batch `ξ` of `B` images (`fit`'s epoch sampling: a fresh permutation per epoch cut into
batches); `B = n` is full-batch GD. The next `num_test` images (standardised with the
training statistics) are the held-out test split. A scalar output, as in Wu & Su's analysis.

Claim (Wu & Su's abstract). At a global minimum that is linearly stable for SGD, `tr(H) ≤
2/η`; GD's stability constrains only `λ_max(H) ≤ 2/η`. `H = ∇²L(θ)` is the full-batch
training Hessian.

The inequalities tested, and where the batch size enters. Near an interpolating minimum of
the square loss `H = (1/n) Σ_i g_i g_iᵀ` (Gauss–Newton, `g_i = ∇_θ f(x_i)`), so `tr(H) = (1/n)
Σ_i ‖g_i‖²`: the trace is the mean of the per-example sharpnesses `λ_max(g_i g_iᵀ) = ‖g_i‖²`.
The linearised SGD step is `δ ← (I − η H_ξ) δ`, `H_ξ = (1/B) Σ_{i∈ξ} g_i g_iᵀ`. With `B = 1`
it is a GD step on one example, stable along `g_i` iff `‖g_i‖² ≤ 2/η`: the abstract's bound
asks this of the examples on average. With `B` examples in the batch-mean loss each gets `1/B`
of the step: for orthogonal `g_i` of equal norms the residual of example `i` is multiplied by
`1 − η tr(H)/B` whenever it is drawn, so the exact condition is `tr(H) ≤ 2B/η`, and GD
(`B = n`) needs only `λ_max = tr(H)/n ≤ 2/η`. Reported per `B`: `η λ_max/2` (GD's
condition), `η tr(H)/2` (the abstract's, `tr(H) ≤ 2/η`) and `η tr(H)/(2B)` (its batch-mean
form `tr(H) ≤ 2B/η`), with the test accuracy; `target_met` is the abstract's statement:
`η tr(H)/2 ≤ 1 + tolerance` for every SGD batch size and `η λ_max/2 ≤ 1 + tolerance` for GD.

Measurement. `λ_max` by Lanczos with full reorthogonalisation
(`jaxdyn.learning.top_eigenpairs`, its residual bound reported), `tr(H)` and `tr(H²)` by
Hutchinson's estimator (`hutchinson_trace`, Rademacher probes) ± their standard errors, all on
the full training loss, every `train.chunk` steps (`fit`'s `eval_fn`); the table holds the
values after the last step.
"""

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from ..config import at_least, positive, section
from ..learning import hessian_operator, hutchinson_trace, top_eigenpairs
from ..plotting import Figure
from ..train import fit
from ._digits_curvature import (
    StepsConfig,
    TanhNetworkConfig,
    check_split_and_batches,
    parity_digits,
    parity_scores,
    square_loss,
)
from ._registry import register


@dataclasses.dataclass
class CurvatureConfig:
    lanczos_steps: int = at_least(20, 2)  # Lanczos products H v per λ_max
    trace_probes: int = at_least(100, 2)  # Hutchinson probes per tr(H), tr(H²)


@dataclasses.dataclass
class SgdStabilityConfig:
    experiment: str = "sgd_stability"
    seed: int = 0  # the initial weights (one draw shared by every batch size) and the batches
    figures: bool = True
    num_train: int = at_least(512, 2)  # the first n load_digits images
    num_test: int = at_least(1285, 1)  # the next ones: the held-out test split
    learning_rate: float = positive(0.1)  # η, shared by GD and every SGD
    batch_sizes: list[int] = dataclasses.field(default_factory=lambda: [512, 64, 8, 1])
    tolerance: float = positive(0.05)  # a bound counts as met at (1 + tolerance) x its value
    network: TanhNetworkConfig = section(TanhNetworkConfig)
    train: StepsConfig = section(StepsConfig)
    curvature: CurvatureConfig = section(CurvatureConfig)


def _check(cfg: DictConfig) -> None:
    check_split_and_batches(cfg, full_batch=True)


def batch_key(batch_size: int, num_train: int) -> str:
    """`"gd"` for the full batch, else `"B_<size>"`."""
    return "gd" if batch_size == num_train else f"B_{batch_size}"


def _curvature(model, x, y, key, lanczos_steps: int, probes: int) -> dict:
    """`λ_max` (Lanczos) and Hutchinson's `tr(H)`, `tr(H²)` of the training loss at `model`."""
    operator = hessian_operator(square_loss, model, x, y)
    lanczos_key, trace_key = jax.random.split(key)
    pair = top_eigenpairs(operator, 1, key=lanczos_key, num_steps=lanczos_steps)
    trace = hutchinson_trace(operator, key=trace_key, num_probes=probes)
    return {"sharpness": pair.values[0], "residual": pair.residuals[0], "trace": trace.trace,
            "trace_se": trace.trace_se, "trace_square": trace.trace_square,
            "trace_square_se": trace.trace_square_se}  # fmt: skip


def _train(cfg: DictConfig, model, train, test, batch_size: int, key) -> tuple[dict, dict]:
    """GD (`batch_size = n`) or SGD at `cfg.learning_rate`; the curvature and the train and
    test scores every `train.chunk` steps (`fit`'s `eval_fn`: one program, also after the last
    step), and the last of them."""
    x, y = train
    c = cfg.curvature

    def loss_fn(model, batch, key):
        return square_loss(model, *batch)

    def eval_fn(model, key):
        return {**_curvature(model, x, y, key, c.lanczos_steps, c.trace_probes),
                **{f"train_{k}": v for k, v in parity_scores(model, x, y).items()},
                **{f"test_{k}": v for k, v in parity_scores(model, *test).items()}}  # fmt: skip

    full = batch_size == x.shape[0]
    result = fit(loss_fn, model, (x, y), optax.sgd(cfg.learning_rate), steps=cfg.train.steps,
                 batch_size=None if full else batch_size, key=key, chunk=cfg.train.chunk,
                 eval_fn=eval_fn, progress=False)  # fmt: skip
    rows = result.evaluations
    names = [k.removeprefix("validation.") for k in rows[-1] if k.startswith("validation.")]
    trace = {name: [float(r[f"validation.{name}"]) for r in rows] for name in names}
    trace["step"] = [int(r["step"]) for r in rows]
    return trace, {name: values[-1] for name, values in trace.items()}


def _row(end: dict, eta: float, batch_size: int) -> dict:
    """The table's row: the curvature against the stability bounds, and the scores."""
    half = eta / 2.0
    return {
        "batch_size": batch_size,
        "sharpness": end["sharpness"],
        "lanczos_residual": end["residual"],
        "trace": end["trace"],
        "trace_se": end["trace_se"],
        "trace_square": end["trace_square"],
        "trace_square_se": end["trace_square_se"],
        "two_over_eta": 2.0 / eta,
        "sharpness_over_2_eta": half * end["sharpness"],
        "trace_over_2_eta": half * end["trace"],
        "trace_over_2_eta_se": half * end["trace_se"],
        "trace_over_2b_eta": half * end["trace"] / batch_size,
        "train_loss": end["train_loss"],
        "train_accuracy": end["train_accuracy"],
        "test_accuracy": end["test_accuracy"],
        "test_loss": end["test_loss"],
    }


def _figure(run_dir: Path, traces: dict, rows: dict, eta: float) -> None:
    fig = Figure(figsize=(11, 4))
    left, middle, right = fig.subplots(1, 3)
    for i, (key, t) in enumerate(traces.items()):
        left.plot(t["step"], t["sharpness"], color=f"C{i}", lw=1.2, label=key)
        middle.plot(t["step"], t["trace"], color=f"C{i}", lw=1.2, label=key)
    for ax in (left, middle):
        ax.axhline(2.0 / eta, color="k", ls="--", lw=0.9, label="2/η")
        ax.set(xlabel="step")
        ax.legend(fontsize=8)
    left.set(ylabel="λ_max(H)", title="sharpness during training")
    middle.set(ylabel="tr(H) (Hutchinson)", title="trace during training")
    sizes = np.array([row["batch_size"] for row in rows.values()], float)
    order = np.argsort(sizes)
    trace = np.array([row["trace"] for row in rows.values()])[order]
    se = np.array([row["trace_se"] for row in rows.values()])[order]
    sharp = np.array([row["sharpness"] for row in rows.values()])[order]
    sizes = sizes[order]
    right.errorbar(sizes, trace, yerr=2 * se, fmt="o-", label="tr(H) ± 2 s.e.")
    right.plot(sizes, sharp, "s-", label="λ_max(H)")
    right.axhline(2.0 / eta, color="k", ls="--", lw=0.9, label="2/η")
    right.plot(sizes, 2.0 * sizes / eta, color="0.5", ls=":", label="2B/η")
    right.set(xscale="log", yscale="log", xlabel="batch size B (largest: GD)",
              ylabel="at the end of training", title=f"Wu & Su 2023, η = {eta:g}")  # fmt: skip
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "sgd_stability.png", dpi=120)


@register("sgd_stability", SgdStabilityConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """GD reaches `λ_max ≈ 2/η`; SGD with small batches reaches flatter minima, bounded in
    trace (Wu & Su 2023)."""
    train, test = parity_digits(cfg.num_train, cfg.num_test)
    key = jax.random.key(cfg.seed)
    init_key, train_key = jax.random.split(key)
    n = cfg.network
    model = eqx.nn.MLP(train[0].shape[1], 1, n.width, n.depth, activation=jnp.tanh, key=init_key)
    eta = float(cfg.learning_rate)
    sizes = sorted((int(b) for b in cfg.batch_sizes), reverse=True)
    traces, rows = {}, {}
    for b in sizes:
        name = batch_key(b, cfg.num_train)
        t, end = _train(cfg, model, train, test, b, jax.random.fold_in(train_key, b))
        traces[name], rows[name] = t, _row(end, eta, b)
    sgd = [row for name, row in rows.items() if name != "gd"]
    gd = rows.get("gd")

    top = 1.0 + cfg.tolerance

    def column(field):
        return {name: row[field] for name, row in rows.items()}

    summary = {
        "learning_rate": eta,
        "two_over_eta": 2.0 / eta,
        "sharpness_over_2_eta": column("sharpness_over_2_eta"),
        "trace_over_2_eta": column("trace_over_2_eta"),
        "trace_over_2b_eta": column("trace_over_2b_eta"),
        "test_accuracy": column("test_accuracy"),
        "train_loss": column("train_loss"),
        "per_batch_size": rows,
        # the abstract's two statements: every SGD minimum has tr(H) <= 2/η, GD's λ_max <= 2/η
        "sgd_trace_bound_met": bool(sgd) and all(r["trace_over_2_eta"] <= top for r in sgd),
        "sgd_batch_trace_bound_met": bool(sgd) and all(r["trace_over_2b_eta"] <= top for r in sgd),
        "gd_sharpness_bound_met": gd is not None and gd["sharpness_over_2_eta"] <= top,
    }
    summary["target_met"] = bool(
        summary["sgd_trace_bound_met"] and summary["gd_sharpness_bound_met"]
    )
    (run_dir / "curvature.json").write_text(json.dumps(traces))
    if cfg.figures:
        _figure(run_dir, traces, rows, eta)
    return summary

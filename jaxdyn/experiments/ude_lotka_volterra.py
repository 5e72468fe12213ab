"""A universal differential equation learns Lotka–Volterra's missing interactions; sparse
regression turns the network back into equations (Rackauckas et al. 2020, "Universal
differential equations for scientific machine learning", their Lotka–Volterra example).

Data: `dx/dt = αx − βxy`, `dy/dt = γxy − δy`, `(α, β, γ, δ) = (1.3, 0.9, 0.8, 1.8)`, from
`u0 = (0.44249296, 4.6280594)`, `num_times = 31` samples on `[0, 3]` (`jaxdyn.odeint`, Dopri8
at rtol = atol = 1e-10), plus Gaussian noise of standard deviation `noise = 5%` of each
coordinate's mean over the samples (the paper's code: `X + 0.05 x̄ randn`). Validation is a
second, independent noisy realisation at the same times (a repeated measurement); the model
trains on all 31 samples of the first, as the paper's does. The truth enters only the scores.

Model: `f(t, u) = (αx, −δy) + U(u)`, the known linear terms with the true α, δ (frozen, a
`SINDy` model of fixed coefficients) and a network `U` (`MLPField`; the paper's 2 → 5 → 5 →
5 → 2 with Gaussian RBF activations `exp(−z²)`), in a `jaxdyn.sysid.UniversalField`. The
initial state is learned too (`model.learn_initial_state`), from the first noisy sample. Loss:
mean squared error of the solve from the initial state at the 31 times against the noisy
data. Training: Adam (`train`, `jaxdyn.fit`) keeping the step with the smallest validation
error, then L-BFGS (`lbfgs.steps`, `optax.lbfgs` with its zoom line search; the paper's BFGS)
from it, checked on validation every `lbfgs.chunk` steps; the network reported is the best on
validation of all checked iterates.

Equations: the network's output `U(u)` at `regression.num_points` states along the fitted
trajectory on `[0, 3]` regressed on `PolynomialLibrary(regression.degree)` by `STLSQ` at each
of `regression.thresholds` (one vmapped program) gives one candidate model per threshold:
known terms + sparse terms. The support is the regression's; its non-zero coefficients are
then refitted to the training data through the solve (`regression.refit_steps` Adam steps
from the regression's values, once per distinct support, skipping candidates whose solve
fails; 0: no refit), as the SciML "missing physics" showcase re-estimates the recovered
model's parameters. Each candidate is simulated from the learned initial state; the
threshold kept is the sparsest model (fewest terms) whose validation error is within
`(1 + regression.tolerance)` of the best candidate's (ties: the smaller error).

Scores, against the truth: the relative errors of the two recovered `xy` coefficients
against −β and +γ (`coef_rel_error_xy`, their max; the regression's own coefficients on that
support before the refit: `…_regression`), the number of other non-zero terms
(`spurious_terms`), and the forecast RMSE over `(3, data.forecast_t1]` of the recovered model
and of the UDE with its network, both from the learned initial state, against the true
trajectory from `u0`. `target_met`: both coefficients within `target.coef_rel_error` and no
spurious term, in every seed (`seeds_meeting_target` counts them; `…_regression` without the refit).

Seeds: seed `s` draws its own noise (both realisations) and initialisation; each trains in
`fits/seed<s>/` and its row goes to `results.jsonl`, so `--resume` skips finished seeds.
"""

import dataclasses
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray
from omegaconf import DictConfig

from ..config import (
    ConfigError,
    SolveConfig,
    TrainConfig,
    at_least,
    choice,
    positive,
    positive_list,
    section,
)
from ..data import lotka_volterra_field
from ..models import ACTIVATIONS, MLPField
from ..plotting import Figure
from ..solve import odeint
from ..sysid import STLSQ, PolynomialLibrary, SINDy, UniversalField, fit_sindy
from ..train.checkpoint import atomic_write
from ._records import append_result, start_results, summary_stats
from ._registry import register
from ._training import fit_from_config

NAMES = ("x", "y")
THRESHOLDS = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5]


@dataclasses.dataclass
class LotkaVolterraDataConfig:
    parameters: list[float] = positive_list([1.3, 0.9, 0.8, 1.8], "parameters (α, β, γ, δ)")
    u0: list[float] = positive_list([0.44249296, 4.6280594], "initial populations")
    t1: float = positive(3.0)  # the samples lie on [0, t1]
    num_times: int = at_least(31, 3)
    noise: float = at_least(0.05, 0.0)  # noise sd: this fraction of each coordinate's mean
    forecast_t1: float = positive(10.0)  # forecasts on [0, forecast_t1], scored after t1
    forecast_points: int = at_least(201, 3)


@dataclasses.dataclass
class UDEModelConfig:
    width: int = at_least(5, 1)
    depth: int = at_least(3, 1)  # hidden layers
    activation: str = choice("rbf", ACTIVATIONS)
    learn_initial_state: bool = True  # false: the first noisy sample, held fixed


@dataclasses.dataclass
class LBFGSConfig:
    steps: int = at_least(2000, 0)  # 0: Adam only
    chunk: int = at_least(100, 1)  # steps between validation checks


@dataclasses.dataclass
class RegressionConfig:
    degree: int = at_least(2, 1)  # PolynomialLibrary(degree) of (x, y)
    alpha: float = at_least(0.05, 0.0)  # STLSQ's ridge weight
    thresholds: list[float] = positive_list(THRESHOLDS, "thresholds")
    num_points: int = at_least(61, 2)  # states along the fitted trajectory on [0, t1]
    tolerance: float = at_least(0.05, 0.0)  # validation slack of the sparsest-model rule
    # Adam steps refitting each candidate's non-zero coefficients to the training data through
    # the solve (0: the regression's coefficients as they are)
    refit_steps: int = at_least(500, 0)
    refit_lr: float = positive(1e-2)


@dataclasses.dataclass
class UDETargetConfig:
    coef_rel_error: float = positive(0.1)


@dataclasses.dataclass
class UDELotkaVolterraConfig:
    experiment: str = "ude_lotka_volterra"
    seed: int = 0
    num_seeds: int = at_least(3, 1)  # seeds seed, seed + 1, …
    figures: bool = True
    data: LotkaVolterraDataConfig = section(LotkaVolterraDataConfig)
    model: UDEModelConfig = section(UDEModelConfig)
    solve: SolveConfig = section(SolveConfig, rtol=1e-7, atol=1e-7)
    train: TrainConfig = section(TrainConfig, steps=6000, lr=1e-2, schedule="cosine",
                                 batch_size=None, chunk=100,
                                 best_metric="validation.loss")  # fmt: skip
    lbfgs: LBFGSConfig = section(LBFGSConfig)
    regression: RegressionConfig = section(RegressionConfig)
    target: UDETargetConfig = section(UDETargetConfig)


def _check(cfg: DictConfig) -> None:
    d = cfg.data
    if len(d.parameters) != 4 or len(d.u0) != 2:
        raise ConfigError(
            f"data.parameters must be 4 numbers (α, β, γ, δ) and data.u0 2, got "
            f"{list(d.parameters)} and {list(d.u0)}"
        )
    if d.forecast_t1 <= d.t1:
        raise ConfigError(f"data.forecast_t1={d.forecast_t1} must be > data.t1={d.t1}")
    if cfg.train.batch_size is not None:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size}: the loss solves the whole trajectory, "
            "so every step sees all samples; set train.batch_size=null"
        )


# --- data and model -------------------------------------------------------------------------


def _truth(cfg: DictConfig, ts: Array) -> Array:
    """The true trajectory from `u0` at `ts` (Dopri8, rtol = atol = 1e-10)."""
    d = cfg.data
    args = tuple(jnp.asarray(p, ts.dtype) for p in d.parameters)
    return odeint(lotka_volterra_field, jnp.asarray(d.u0, ts.dtype), ts, args=args,
                  solver="dopri8", rtol=1e-10, atol=1e-10, max_steps=100_000).ys  # fmt: skip


def make_data(cfg: DictConfig, seed: int) -> dict:
    """Seed `seed`'s samples: times, truth, the training and the validation realisations."""
    d = cfg.data
    ts = jnp.linspace(0.0, d.t1, d.num_times)
    truth = _truth(cfg, ts)
    scale = d.noise * jnp.mean(truth, axis=0)  # populations are positive: the mean magnitude
    train_key, validation_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0))
    noisy = [truth + scale * jax.random.normal(k, truth.shape, truth.dtype)
             for k in (train_key, validation_key)]  # fmt: skip
    return {"ts": ts, "truth": truth, "train": noisy[0], "validation": noisy[1]}


def known_terms(cfg: DictConfig, library: PolynomialLibrary) -> SINDy:
    """The known terms `(αx, −δy)` as a `SINDy` model on `library`."""
    alpha, _, _, delta = cfg.data.parameters
    features = library.names(NAMES)
    coefficients = np.zeros((2, len(features)))
    coefficients[0, features.index("x")] = alpha
    coefficients[1, features.index("y")] = -delta
    return SINDy(library, jnp.asarray(coefficients), NAMES)


class Trajectory(eqx.Module):
    """A field and its initial state, solved at `ts` (the solve options static)."""

    field: UniversalField | SINDy
    y0: Float[Array, " 2"]
    learn_y0: bool = eqx.field(static=True)
    options: tuple = eqx.field(static=True)  # (solver, rtol, atol, dt0, adjoint, max_steps)
    on_failure: str = eqx.field(static=True, default="raise")

    def __call__(self, ts: Float[Array, " time"]) -> Float[Array, "time 2"]:
        solver, rtol, atol, dt0, adjoint, max_steps = self.options
        y0 = self.y0 if self.learn_y0 else jax.lax.stop_gradient(self.y0)
        return odeint(self.field, y0, ts, solver=solver, rtol=rtol, atol=atol, dt0=dt0,
                      adjoint=adjoint, max_steps=max_steps,
                      on_failure=self.on_failure).ys  # fmt: skip


def build_model(cfg: DictConfig, y0: Array, library: PolynomialLibrary, *, key: PRNGKeyArray):
    """The UDE of the config, from the initial state `y0`."""
    m, s = cfg.model, cfg.solve
    network = MLPField(dim=2, width=m.width, depth=m.depth, activation=m.activation, key=key)
    field = UniversalField(known_terms(cfg, library), network)
    options = (s.solver, s.rtol, s.atol, s.dt0, s.adjoint, s.max_steps)
    return Trajectory(field, y0, m.learn_initial_state, options)


class _TrajectoryLoss(eqx.Module):
    """Mean squared error of the model's solve at `ts` against the data (`fit`'s batch: all
    samples). A module, so that seeds share `fit`'s compiled chunk."""

    ts: Array

    def __call__(self, model: Trajectory, batch: Array, key) -> Array:
        return jnp.mean((model(self.ts) - batch) ** 2)


class _ValidationLoss(eqx.Module):
    """`{"loss": MSE against the validation realisation}`; a failed solve gives NaN."""

    ts: Array
    ys: Array

    def __call__(self, model: Trajectory, key) -> dict:
        model = dataclasses.replace(model, on_failure="nan")
        return {"loss": jnp.mean((model(self.ts) - self.ys) ** 2)}


# --- L-BFGS -------------------------------------------------------------------------------

_LBFGS = optax.lbfgs()  # one object: the chunk compiles once per (loss, shapes)


@eqx.filter_jit
def _lbfgs_chunk(params, state, static, loss: _TrajectoryLoss, data: Array, length: int):
    def value(p):
        return loss(eqx.combine(p, static), data, None)

    value_and_grad = optax.value_and_grad_from_state(value)

    def step(carry, _):
        p, s = carry
        v, g = value_and_grad(p, state=s)
        updates, s = _LBFGS.update(g, s, p, value=v, grad=g, value_fn=value)
        return (optax.apply_updates(p, updates), s), v

    (params, state), values = jax.lax.scan(step, (params, state), None, length=length)
    return params, state, values


def lbfgs_refine(cfg: DictConfig, model: Trajectory, loss, data, validation, best: float):
    """L-BFGS from `model` (the paper's BFGS stage), `cfg.lbfgs.steps` steps; every
    `cfg.lbfgs.chunk` steps the iterate is checked on validation. Returns the best checked
    model (`model` itself if none beats `best`), its validation loss, the steps taken to it
    and the training losses."""
    model_policy = model.on_failure
    model = dataclasses.replace(model, on_failure="nan")  # a line-search trial may fail
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = _LBFGS.init(params)
    evaluate = eqx.filter_jit(validation)
    best_params, best_step, losses, step = params, 0, [], 0
    while step < cfg.lbfgs.steps:
        length = min(cfg.lbfgs.chunk, cfg.lbfgs.steps - step)
        params, state, values = _lbfgs_chunk(params, state, static, loss, data, length)
        losses += np.asarray(values).tolist()
        step += length
        if not np.all(np.isfinite(np.asarray(values))):
            break
        # as `fit` calls it (a key, the model's own failure policy): `fit`'s compiled program
        checked = dataclasses.replace(eqx.combine(params, static), on_failure=model_policy)
        score = float(evaluate(checked, jax.random.key(0))["loss"])
        if np.isfinite(score) and score < best:
            best_params, best, best_step = params, score, step
    refined = dataclasses.replace(eqx.combine(best_params, static), on_failure="raise")
    return refined, best, best_step, losses


# --- equations ----------------------------------------------------------------------------


def _regression(cfg: DictConfig, model: Trajectory, library: PolynomialLibrary) -> dict:
    """The network's output along the fitted trajectory and a STLSQ fit per threshold."""
    r = cfg.regression
    ts = jnp.linspace(0.0, cfg.data.t1, r.num_points)
    states = eqx.filter_jit(model)(ts)
    network = model.field.learned
    values = jax.vmap(lambda u: network(0.0, u))(states)
    thresholds = jnp.asarray(r.thresholds, states.dtype)

    @eqx.filter_vmap
    def fit(threshold):
        optimizer = STLSQ(threshold=threshold, alpha=r.alpha, on_failure="return")
        return fit_sindy(states, float(ts[1] - ts[0]), library=library, optimizer=optimizer,
                         derivative=values, input_names=NAMES).coefficients  # fmt: skip

    return {"ts": ts, "states": states, "values": values, "coefficients": fit(thresholds)}


@eqx.filter_jit
def _simulate_all(models: Trajectory, ts: Array) -> Array:
    """Each of a batch of trajectories (batched coefficients) at `ts`; failures NaN."""
    return eqx.filter_vmap(lambda m: m(ts))(models)


@eqx.filter_jit
def _refit(model: Trajectory, known: Array, data: Array, ts: Array, steps: int, lr: float):
    """The candidate's non-zero sparse coefficients (`model.field.coefficients − known`)
    refitted by `steps` Adam steps (cosine decay from `lr`) on the mean squared error of its
    solve against `data`; the support and the known terms stay fixed. Returns the model's
    new coefficients (NaN where a solve failed)."""
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))
    sparse = model.field.coefficients - known
    mask = sparse != 0

    def loss(c):
        field = dataclasses.replace(model.field, coefficients=known + c * mask)
        return jnp.mean((dataclasses.replace(model, field=field)(ts) - data) ** 2)

    def step(carry, _):
        c, state = carry
        updates, state = optimizer.update(jax.grad(loss)(c), state, c)
        return (optax.apply_updates(c, updates), state), None

    (c, _), _ = jax.lax.scan(step, (sparse, optimizer.init(sparse)), None, length=steps)
    return known + c * mask


def _refit_all(cfg, candidates: Trajectory, known, data, ts, finite) -> Array:
    """`_refit` of every candidate whose solve succeeded (`finite`), once per distinct
    support (thresholds often select the same one), one candidate at a time: a vmapped
    refit would run every step to the slowest candidate, and a diverging one takes
    `max_steps`. Failed candidates are left as they are."""
    r = cfg.regression
    coefficients = np.array(candidates.field.coefficients)
    refitted = {}
    for i in np.flatnonzero(finite):
        support = (coefficients[i] - np.asarray(known) != 0).tobytes()
        if support not in refitted:
            one = jax.tree.map(lambda a, i=i: a[i] if eqx.is_array(a) else a, candidates)
            refitted[support] = np.asarray(_refit(one, known, data, ts, r.refit_steps,
                                                  r.refit_lr))  # fmt: skip
        coefficients[i] = refitted[support]
    return jnp.asarray(coefficients)


def _select(errors: np.ndarray, terms: np.ndarray, tolerance: float) -> int:
    """The sparsest candidate within `(1 + tolerance)` of the best validation error (ties:
    the smaller error); non-finite errors never chosen."""
    errors = np.where(np.isfinite(errors), errors, np.inf)
    ok = errors <= (1 + tolerance) * errors.min()
    return int(min(np.flatnonzero(ok), key=lambda i: (terms[i], errors[i])))


def _rmse(pred, truth) -> float | None:
    pred = np.asarray(pred)
    if not np.all(np.isfinite(pred)):
        return None
    return float(np.sqrt(np.mean((pred - np.asarray(truth)) ** 2)))


# --- one seed -----------------------------------------------------------------------------


def _run_seed(cfg, seed, run_dir, resume, library, loss) -> tuple[dict, dict]:
    start = time.perf_counter()
    data = make_data(cfg, seed)
    ts = data["ts"]
    model_key, fit_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1))
    model = build_model(cfg, data["train"][0], library, key=model_key)
    validation = _ValidationLoss(ts, data["validation"])
    fit_dir = run_dir / "fits" / f"seed{seed}"
    fit_dir.mkdir(parents=True, exist_ok=True)
    result = fit_from_config(loss, model, data["train"], cfg.train, key=fit_key, run_dir=fit_dir,
                             resume=resume, eval_fn=validation)  # fmt: skip
    if result.best_model is not None:
        model, best = result.best_model, float(result.best_value)
    else:
        model = result.model
        best = float(eqx.filter_jit(validation)(model, None)["loss"])
    adam_validation = best
    model, best, lbfgs_step, lbfgs_losses = lbfgs_refine(cfg, model, loss, data["train"],
                                                         validation, best)  # fmt: skip

    # Equations: a STLSQ fit per threshold, each recovered model checked on validation.
    reg = _regression(cfg, model, library)
    known = model.field.known.coefficients
    sparse = np.asarray(reg["coefficients"])  # (thresholds, 2, features)
    candidates = Trajectory(SINDy(library, known + reg["coefficients"], NAMES), model.y0,
                            False, model.options, on_failure="nan")  # fmt: skip
    candidates = eqx.tree_at(lambda m: m.y0, candidates,
                             jnp.broadcast_to(model.y0, (len(sparse), 2)))  # fmt: skip
    r = cfg.regression
    ys = np.asarray(_simulate_all(candidates, ts))
    if r.refit_steps:
        finite = np.all(np.isfinite(ys), axis=(1, 2))
        refitted = _refit_all(cfg, candidates, known, data["train"], ts, finite)
        candidates = eqx.tree_at(lambda m: m.field.coefficients, candidates, refitted)
        ys = np.asarray(_simulate_all(candidates, ts))
    errors = np.mean((ys - np.asarray(data["validation"])[None]) ** 2, axis=(1, 2))
    terms = np.count_nonzero(sparse, axis=(1, 2))
    chosen = _select(errors, terms, r.tolerance)
    final = np.asarray(candidates.field.coefficients[chosen] - known)  # zero off the support
    recovered = SINDy(library, known + final, NAMES)

    # Scores against the truth.
    _, beta, gamma, _ = cfg.data.parameters
    xy = library.names(NAMES).index("x y")
    truth_xy = np.array([-beta, gamma])
    c_xy = final[:, xy]
    rel = np.abs(c_xy - truth_xy) / np.abs(truth_xy)
    regression_rel = np.abs(sparse[chosen][:, xy] - truth_xy) / np.abs(truth_xy)
    spurious = int(np.count_nonzero(sparse[chosen]) - np.count_nonzero(c_xy))
    ts_f = jnp.linspace(0.0, cfg.data.forecast_t1, cfg.data.forecast_points)
    truth_f = _truth(cfg, ts_f)
    network_f = eqx.filter_jit(dataclasses.replace(model, on_failure="nan"))(ts_f)
    sindy_model = Trajectory(recovered, model.y0, False, model.options, on_failure="nan")
    sindy_f = eqx.filter_jit(sindy_model)(ts_f)
    after = np.asarray(ts_f) > cfg.data.t1
    states = reg["states"]
    true_values = jnp.stack([-beta * states[:, 0] * states[:, 1],
                             gamma * states[:, 0] * states[:, 1]], -1)  # fmt: skip
    target = cfg.target.coef_rel_error
    row = {
        "seed": seed,
        "coef_xy": c_xy.tolist(),
        "coef_rel_error_xy": float(rel.max()),
        "spurious_terms": spurious,
        "target_met": bool(rel.max() <= target and spurious == 0),
        # the regression's own coefficients on the chosen support, before the refit
        "coef_xy_regression": sparse[chosen][:, xy].tolist(),
        "coef_rel_error_xy_regression": float(regression_rel.max()),
        "target_met_regression": bool(regression_rel.max() <= target and spurious == 0),
        "forecast_rmse_sindy": _rmse(sindy_f[after], truth_f[after]),
        "forecast_rmse_network": _rmse(network_f[after], truth_f[after]),
        "fit_rmse_network": _rmse(eqx.filter_jit(model)(ts), data["truth"]),
        "interaction_rel_error": float(
            jnp.linalg.norm(reg["values"] - true_values) / jnp.linalg.norm(true_values)
        ),  # fmt: skip
        "threshold": float(cfg.regression.thresholds[chosen]),
        "validation_mse_network": best,
        "validation_mse_adam": adam_validation,
        "validation_mse_sindy": float(errors[chosen]),
        "adam_best_step": result.best_step,
        "lbfgs_best_step": lbfgs_step,
        "final_lbfgs_loss": lbfgs_losses[-1] if lbfgs_losses else None,
        "equations": list(recovered.equations()),
        "candidates": [  # every threshold's model, as the selection saw it
            {
                "threshold": float(t),
                "terms": int(n),
                "validation_mse": float(e),
                "equations": list(SINDy(library, np.asarray(c), NAMES).equations()),
            }
            for t, n, e, c in zip(
                r.thresholds, terms, errors, np.asarray(candidates.field.coefficients), strict=True
            )
        ],  # fmt: skip
        "initial_state": np.asarray(model.y0).tolist(),
        "seconds": time.perf_counter() - start,
    }
    arrays = {
        "ts": ts, "train": data["train"], "validation": data["validation"], "ts_f": ts_f,
        "truth_f": truth_f, "network_f": network_f, "sindy_f": sindy_f,
        "ts_reg": reg["ts"], "values": reg["values"], "true_values": true_values,
    }  # fmt: skip
    return row, {k: np.asarray(v) for k, v in arrays.items()}


@register("ude_lotka_volterra", UDELotkaVolterraConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """UDE on Lotka–Volterra: a network learns the interactions, STLSQ recovers ∓βxy, γxy."""
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    with jax.enable_x64(True):  # float64 here only: L-BFGS and STLSQ on a smooth loss
        library = PolynomialLibrary(cfg.regression.degree)
        loss = _TrajectoryLoss(jnp.linspace(0.0, cfg.data.t1, cfg.data.num_times))
        results_path, done = start_results(run_dir, ("seed",), resume=resume)
        for seed in seeds:
            if (seed,) in done:
                continue
            row, arrays = _run_seed(cfg, seed, run_dir, resume, library, loss)
            if seed == seeds[0]:  # saved (atomically) before the row marks the seed done
                atomic_write(run_dir / "predictions.npz",
                             lambda f, arrays=arrays: np.savez(f, **arrays))  # fmt: skip
            print(f"[ude_lotka_volterra] seed {seed}: " + "; ".join(row["equations"])
                  + f"; coef_rel_error_xy {row['coef_rel_error_xy']:.3f}, spurious "
                  f"{row['spurious_terms']}", flush=True)  # fmt: skip
            done[(seed,)] = row
            append_result(results_path, row)
    rows = [done[(s,)] for s in seeds]
    if cfg.figures and (run_dir / "predictions.npz").is_file():
        with np.load(run_dir / "predictions.npz") as f:
            _figures(run_dir, {k: f[k] for k in f.files}, cfg.data.t1)
    return _report(cfg, rows, seeds)


def _report(cfg: DictConfig, rows: list[dict], seeds: list[int]) -> dict:
    keys = ("coef_rel_error_xy", "spurious_terms", "forecast_rmse_sindy",
            "forecast_rmse_network", "fit_rmse_network", "interaction_rel_error",
            "coef_rel_error_xy_regression")  # fmt: skip
    stats = {}
    for key in keys:
        values = [row[key] for row in rows]
        if all(v is not None for v in values):
            stats[key] = summary_stats(values)
        else:  # a failed forecast: counted, never averaged over
            stats[key] = {"mean": None, "std": None, "runs": values,
                          "failed": sum(v is None for v in values)}  # fmt: skip
    met = [row["target_met"] for row in rows]
    return {
        "seeds": seeds,
        **{key: stats[key]["mean"] for key in keys},
        "target_met": all(met),
        "seeds_meeting_target": int(sum(met)),
        "seeds_meeting_target_regression": int(sum(row["target_met_regression"] for row in rows)),
        "target": (
            f"in every seed, both recovered xy coefficients within {cfg.target.coef_rel_error:.0%} "
            "of −β and +γ and no other term"
        ),
        "statistics": stats,
        "per_seed": rows,
    }


# --- figures --------------------------------------------------------------------------------


def _figures(run_dir: Path, a: dict, t1: float) -> None:
    fig = Figure(figsize=(8, 5))
    axes = fig.subplots(2, 1, sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(a["ts_f"], a["truth_f"][:, i], "k-", lw=1.5, label="truth")
        ax.plot(a["ts_f"], a["network_f"][:, i], "C0--", lw=1.5, label="UDE (network)")
        ax.plot(a["ts_f"], a["sindy_f"][:, i], "C3:", lw=2, label="recovered equations")
        ax.plot(a["ts"], a["train"][:, i], "ko", ms=3, mfc="none", label="training data")
        ax.plot(a["ts"], a["validation"][:, i], "C2x", ms=3, label="validation data")
        ax.axvline(t1, color="0.6", lw=0.8)
        top = 1.3 * max(a["truth_f"][:, i].max(), a["train"][:, i].max())
        ax.set(ylabel=NAMES[i], ylim=(-0.1 * top, top))  # a diverging forecast leaves the axes
    axes[0].legend(loc="upper right", fontsize=7, ncol=2)
    axes[-1].set_xlabel("t")
    fig.suptitle(f"Lotka–Volterra: fit on [0, {t1:g}], forecast beyond (first seed)")
    fig.tight_layout()
    fig.savefig(run_dir / "fit_forecast.png", dpi=120)

    fig = Figure(figsize=(8, 3.5))
    axes = fig.subplots(1, 2)
    for i, (ax, name) in enumerate(zip(axes, ("−βxy", "γxy"), strict=True)):
        ax.plot(a["ts_reg"], a["true_values"][:, i], "k-", lw=1.5, label=f"true {name}")
        ax.plot(a["ts_reg"], a["values"][:, i], "C0--", lw=1.5, label=f"network U{i + 1}")
        ax.set(xlabel="t (along the fitted trajectory)", title=f"missing term {name}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "interaction.png", dpi=120)

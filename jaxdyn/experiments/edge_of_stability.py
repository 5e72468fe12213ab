"""Gradient descent at the edge of stability (Cohen, Kaur, Li, Kolter & Talwalkar 2021, "Gradient
descent on neural networks typically occurs at the edge of stability", ICLR; their fc-tanh
network).

Setting. A fully connected network `f_θ: ℝ⁶⁴ → ℝ¹⁰` with `depth` tanh hidden layers of `width`
units and biases (Cohen et al.'s fc-tanh: [200, 200]), PyTorch's default initialisation
(`eqx.nn.MLP`: uniform on `±1/√fan_in`, the seed draws it), trained by full-batch gradient
descent `θ ← θ − η ∇L(θ)` on the square loss against one-hot targets,
`L(θ) = (1/2N) Σ_i ‖f_θ(x_i) − e_{y_i}‖²`, over the first `N = 1000` images of scikit-learn's
`load_digits`, each pixel standardised over those `N` (mean 0, standard deviation 1; constant
pixels left at 0).

Claim. On a quadratic, gradient descent diverges along any direction whose curvature exceeds
`2/η`. On a network the sharpness `λ_max(∇²L(θ_t))` rises during training (progressive
sharpening) until it reaches `2/η`, then hovers just above or at it while the loss keeps
falling, non-monotonically (the edge of stability). Reported per `η`: the mean of
`λ_max · η / 2` over the evaluations in the late window (`sharpness_over_2_eta`, ≈ 1 at the
edge), its min and max there, the step where `λ_max` first reaches 0.95 · 2/η, and the final
training loss and accuracy.

Measurement. `λ_max` of the full-batch training loss by Lanczos with full reorthogonalisation
(`jaxdyn.learning.top_eigenpairs` on `hessian_operator`, forward-over-reverse products), taken
in `fit`'s `eval_fn` every `train.chunk · train.eval_every` steps.
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

from ..config import ConfigError, at_least, positive, positive_list, section
from ..learning import hessian_operator, top_eigenpairs
from ..plotting import Figure
from ..train import fit
from ._digits_curvature import DIGITS_SIZE, eta_key, square_loss, standardised_digits
from ._registry import register


@dataclasses.dataclass
class NetworkConfig:
    width: int = at_least(200, 1)  # units in every hidden layer
    depth: int = at_least(2, 1)  # tanh hidden layers (fc-tanh: 2)


@dataclasses.dataclass
class TrainConfig:
    steps: int = at_least(4000, 1)  # full-batch gradient-descent steps per learning rate
    chunk: int = at_least(50, 1)  # steps per jitted scan
    eval_every: int = at_least(1, 1)  # λ_max every chunk · eval_every steps


@dataclasses.dataclass
class EdgeOfStabilityConfig:
    experiment: str = "edge_of_stability"
    seed: int = 0  # the initial weights (one draw shared by every learning rate)
    figures: bool = True
    num_samples: int = at_least(1000, 10)  # the first N load_digits images
    learning_rates: list[float] = positive_list([0.1, 0.2], "learning rates")
    window_start: int = at_least(2000, 0)  # the late window [start, end] of the summary
    window_end: int = at_least(4000, 1)
    target_rel_tolerance: float = positive(0.05)  # |mean λ_max η/2 − 1| allowed in the window
    lanczos_steps: int = at_least(20, 2)  # Lanczos products H v per λ_max
    network: NetworkConfig = section(NetworkConfig)
    train: TrainConfig = section(TrainConfig)


def _check(cfg: DictConfig) -> None:
    if cfg.num_samples > DIGITS_SIZE:
        raise ConfigError(f"num_samples={cfg.num_samples} must be <= {DIGITS_SIZE} (load_digits)")
    if cfg.window_start >= cfg.window_end:
        raise ConfigError(f"window_start={cfg.window_start} must be < window_end={cfg.window_end}")
    if cfg.window_end > cfg.train.steps:
        raise ConfigError(f"window_end={cfg.window_end} must be <= train.steps={cfg.train.steps}")
    every = cfg.train.chunk * cfg.train.eval_every
    first = -(-cfg.window_start // every) * every
    if first > cfg.window_end and cfg.window_end != cfg.train.steps:
        raise ConfigError(
            f"window_start={cfg.window_start}..window_end={cfg.window_end} holds no evaluation "
            f"of λ_max (every train.chunk · train.eval_every = {every} steps)"
        )
    if len(set(cfg.learning_rates)) != len(cfg.learning_rates):
        raise ConfigError(f"learning_rates={list(cfg.learning_rates)} repeats a value")


def _train(cfg: DictConfig, model: eqx.Module, x, y, labels, eta: float, key) -> dict:
    """Full-batch GD at `eta` through `fit`, `λ_max`, the loss and the accuracy at every
    evaluation."""

    def loss_fn(model, batch, key):
        return square_loss(model, *batch)

    def eval_fn(model, key):
        operator = hessian_operator(square_loss, model, x, y)
        pair = top_eigenpairs(operator, 1, key=key, num_steps=cfg.lanczos_steps)
        out = jax.vmap(model)(x)
        return {"sharpness": pair.values[0], "residual": pair.residuals[0],
                "loss": 0.5 * jnp.sum((out - y) ** 2) / x.shape[0],
                "accuracy": jnp.mean(jnp.argmax(out, axis=1) == labels)}  # fmt: skip

    first = eqx.filter_jit(eval_fn)(model, jax.random.fold_in(key, 10**9))
    result = fit(loss_fn, model, (x, y), optax.sgd(eta), steps=cfg.train.steps,
                 batch_size=None, key=key, chunk=cfg.train.chunk, eval_fn=eval_fn,
                 eval_every=cfg.train.eval_every, progress=False)  # fmt: skip
    rows = [{"step": 0, **{f"validation.{k}": float(v) for k, v in first.items()}},
            *result.evaluations]  # fmt: skip
    trace = {name: np.array([float(r[f"validation.{name}"]) for r in rows])
             for name in ("sharpness", "residual", "loss", "accuracy")}  # fmt: skip
    trace["step"] = np.array([int(r["step"]) for r in rows])
    trace["train_loss"] = np.asarray(result.losses)
    return trace


def _figure(run_dir: Path, traces: dict, etas: list[float], window: tuple[int, int]) -> None:
    fig = Figure(figsize=(7, 7))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i, eta in enumerate(etas):
        t = traces[eta]
        top.plot(t["step"], t["sharpness"], color=f"C{i}", lw=1.2, label=f"η = {eta:g}")
        top.axhline(2.0 / eta, color=f"C{i}", ls="--", lw=0.9, label=f"2/η = {2 / eta:g}")
        bottom.semilogy(np.arange(1, t["train_loss"].size + 1), t["train_loss"], color=f"C{i}",
                        lw=1, label=f"η = {eta:g}")  # fmt: skip
    for ax in (top, bottom):
        ax.axvspan(*window, color="0.9", zorder=0)
    top.set(
        ylabel="sharpness $λ_{max}$",
        title="Cohen et al. 2021: full-batch GD, fc-tanh on digits (grey: late window)",
    )
    top.legend(fontsize=8, ncol=2)
    bottom.set(xlabel="step", ylabel="training loss (square)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "sharpness.png", dpi=120)


@register("edge_of_stability", EdgeOfStabilityConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Sharpness rises to 2/η and hovers there under full-batch GD (Cohen et al. 2021)."""
    x, y, labels = standardised_digits(cfg.num_samples)
    key = jax.random.key(cfg.seed)
    init_key, train_key = jax.random.split(key)
    n = cfg.network
    model = eqx.nn.MLP(x.shape[1], 10, n.width, n.depth, activation=jnp.tanh, key=init_key)
    etas = [float(eta) for eta in cfg.learning_rates]
    window = (cfg.window_start, cfg.window_end)
    traces, summary_rows = {}, {}
    for eta in etas:
        t = _train(cfg, model, x, y, labels, eta, jax.random.fold_in(train_key, len(traces)))
        traces[eta] = t
        inside = (t["step"] >= window[0]) & (t["step"] <= window[1])
        late = t["sharpness"][inside]
        reached = np.nonzero(t["sharpness"] >= 0.95 * 2.0 / eta)[0]
        summary_rows[eta_key(eta)] = {
            "sharpness_over_2_eta": float(np.mean(late) * eta / 2.0),
            "sharpness_min": float(np.min(late)),
            "sharpness_max": float(np.max(late)),
            "two_over_eta": 2.0 / eta,
            "initial_sharpness": float(t["sharpness"][0]),
            "first_step_near_two_over_eta": int(t["step"][reached[0]]) if reached.size else None,
            "max_lanczos_residual_in_window": float(np.max(t["residual"][inside])),
            "final_train_loss": float(t["loss"][-1]),
            "final_train_accuracy": float(t["accuracy"][-1]),
            "evaluations_in_window": int(late.size),
        }
    ratios = [row["sharpness_over_2_eta"] for row in summary_rows.values()]
    summary = {
        "sharpness_over_2_eta": {k: row["sharpness_over_2_eta"] for k, row in summary_rows.items()},
        "per_learning_rate": summary_rows,
        "window": list(window),
        "target_rel_tolerance": cfg.target_rel_tolerance,
        "target_met": bool(
            all(np.isfinite(r) and abs(r - 1.0) <= cfg.target_rel_tolerance for r in ratios)
        ),  # fmt: skip
    }
    traces_json = {eta_key(eta): {k: v.tolist() for k, v in t.items() if k != "train_loss"}
                   for eta, t in traces.items()}  # fmt: skip
    (run_dir / "sharpness.json").write_text(json.dumps(traces_json))
    if cfg.figures:
        _figure(run_dir, traces, etas, window)
    return summary

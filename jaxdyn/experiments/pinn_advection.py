"""Causal PINNs on linear advection (Wang, Sankaran & Perdikaris 2022, "Respecting causality
is all you need for training physics-informed neural networks"; Wang, Sankaran, Wang &
Perdikaris 2023, "An expert's guide to training PINNs", whose jaxpi code sets the defaults).

Setting. `u_t + β u_x = 0` on `t ∈ [0, 1]`, `x ∈ [0, 2π)` periodic, `u(0, x) = sin x`,
`β = 30`; the exact solution is `u = sin(x − βt)`. A tanh MLP `u(t, x)` of `[t, cos x,
sin x]` (an exact periodic embedding, so no boundary loss; `jaxdyn.physics.PeriodicEmbedding`)
is trained by Adam on `λ_ic L_ic + λ_res L_res`: the initial condition on a fixed grid of `x`
and the residual `u_t + β u_x` (`jaxdyn.physics.pde_residual`, `jax.jacfwd` vmapped over
points) at collocation points drawn uniformly inside the loss each step (`fit` with the loss
coefficients as its only data), `λ` balanced by gradient norms every `update_every` steps
(jaxpi's scheme, `jaxdyn.physics.update_grad_norm_weights`). The ablation, one run per
variant, same initialisation key:

- `plain`: that network;
- `fourier`: random Fourier features of time, `t ↦ [cos bt, sin bt]`, `b ~ N(0, σ²)`
  (`jaxdyn.physics.FourierFeatures`), in place of `t`;
- `causal`: the residual loss weighted over `M` time chunks by `w_i = exp(−ε Σ_{k<i} L_k)`
  (`jaxdyn.physics.causal_weights`), `ε` annealed ×10 up to 100 once `min w > 0.99`;
- `all`: both. Declared the method before any run (the headline `rel_l2` is its error; no
  variant is selected on the errors).

The learning rate decays from `lr` to `final_lr` over the run's steps (`train.schedule`:
cosine or exponential, so the decay fits any step budget; jaxpi's ×0.9 every `decay_steps`
is `decay`); `network.factorize` adds random weight factorisation
(`jaxdyn.physics.factorize_mlp`).

Measured. The relative L2 error `‖u − u_exact‖ / ‖u_exact‖` on a `nt × nx` grid after every
weight update (the reference is the closed form; nothing is chosen on it), the process's CPU
seconds and the wall seconds of each variant's training, and the validation losses settings
are selected on, which do not use the exact solution: the mean squared residual on the grid
(`val_residual_*`; for advection the error along a characteristic is the initial error plus
the residual integrated along it) and the initial-condition error (`val_ic_*`).
"""

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from ..config import ConfigError, distinct_names, positive, section
from ..plotting import Figure
from ._pinn import (
    VARIANTS,
    CausalConfig,
    EvalConfig,
    NetworkConfig,
    Problem,
    TrainConfig,
    solution_figure,
    train,
)
from ._registry import register

TARGET = 2e-2  # the relative L2 target for the best variant
CPU_BUDGET = 300.0  # seconds: "≤ 5 minutes on CPU"


@dataclasses.dataclass
class PinnAdvectionConfig:
    experiment: str = "pinn_advection"
    seed: int = 0  # the network initialisation, Fourier matrix and collocation draws
    figures: bool = True
    beta: float = positive(30.0)  # advection speed
    variants: list = distinct_names(list(VARIANTS), list(VARIANTS))
    network: NetworkConfig = section(NetworkConfig, fourier_scale=10.0)
    train: TrainConfig = section(TrainConfig)
    causal: CausalConfig = section(CausalConfig)
    eval: EvalConfig = section(EvalConfig)


def check(cfg: DictConfig) -> None:
    if cfg.train.batch % cfg.causal.chunks:
        raise ConfigError(
            f"train.batch={cfg.train.batch} must be a multiple of causal.chunks="
            f"{cfg.causal.chunks} (the sorted points are cut into equal chunks)"
        )


def problem(beta: float) -> Problem:
    """`u_t + β u_x = 0`, `u(0, x) = sin x`, periodic on `[0, 2π)`, `t ∈ [0, 1]`."""
    return Problem(pde=lambda d, t, x: d.u_t + beta * d.u_x, u0=jnp.sin, order=1, x0=0.0,
                   period=2 * math.pi, t1=1.0)  # fmt: skip


def exact(beta: float, t, x):
    """`sin(x − βt)` on the grid `t × x`."""
    return jnp.sin(x[None, :] - beta * t[:, None])


@register("pinn_advection", PinnAdvectionConfig, check=check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """The PINN ablation (plain / Fourier features of time / causal / both) on advection with
    β = 30 (Wang et al. 2022, 2023)."""
    t = jnp.linspace(0.0, 1.0, cfg.eval.nt)
    x = 2 * math.pi * jnp.arange(cfg.eval.nx) / cfg.eval.nx
    reference = exact(cfg.beta, t, x)
    key = jax.random.key(cfg.seed)
    results = {v: train(problem(cfg.beta), cfg, v, key=key, t_grid=t, x_grid=x,
                        reference=reference) for v in cfg.variants}  # fmt: skip
    summary = {}
    for v, r in results.items():
        summary[f"rel_l2_{v}"] = float(r["history"]["rel_l2"][-1])
        summary[f"cpu_seconds_{v}"] = r["cpu_seconds"]
        summary[f"wall_seconds_{v}"] = r["wall_seconds"]
        summary[f"val_residual_{v}"] = r["val_residual"]
        summary[f"val_ic_{v}"] = r["val_ic"]
    if "all" in results:
        best = results["all"]
        summary["rel_l2"] = summary["rel_l2_all"]
        summary["target_met"] = bool(
            summary["rel_l2"] <= TARGET and best["cpu_seconds"] <= CPU_BUDGET
        )
        summary["final_epsilon"] = float(best["history"]["epsilon"][-1])
        summary["final_min_causal_weight"] = float(best["history"]["min_causal_weight"][-1])
    summary["steps"] = int(cfg.train.steps)
    if cfg.figures:
        _figures(run_dir, results, t, x, reference, cfg)
    return summary


def _figures(run_dir: Path, results: dict, t, x, reference, cfg: DictConfig) -> None:
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for v, r in results.items():
        h = r["history"]
        ax.semilogy(h["step"], h["rel_l2"], label=v)
    ax.axhline(TARGET, color="k", ls=":", lw=1, label="target 2e-2")
    ax.set(xlabel="step", ylabel="relative L2 error",
           title=f"PINN ablation, advection β = {cfg.beta:g}")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "rel_l2.png", dpi=120)
    solution_figure(
        run_dir / "solutions.png",
        results,
        t,
        x,
        reference,
        extent=(0.0, float(x[-1]), 0.0, 1.0),
        title="exact sin(x − βt)",
    )

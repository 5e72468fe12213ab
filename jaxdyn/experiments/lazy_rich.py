"""Lazy and rich training of a two-layer network on polynomial regression (Kumar, Bordelon,
Gershman & Pehlevan 2024, "Grokking as the transition from lazy to rich training dynamics",
ICLR, arXiv:2310.06110; the output scale of Chizat, Oyallon & Bach 2019), and how the rank of
the initial connectivity sets the regime (Liu et al. 2024, "How connectivity structure shapes
rich and lazy learning in neural circuits", ICLR).

Setting (Kumar et al.'s Figure 1). Inputs `x ~ N(0, I_D)`, `D = 100`; the target
`y = (β·x)²/2` with `β` a random unit vector; `P = 550` training points and a test set of
`data.test` points drawn from keys no training step uses. The network
`f(w; x) = (1/N) Σᵢ φ(wᵢ·x / √D)`, `φ(h) = h + (ε/2) h²`, `ε = 0.02`, `N = 500` hidden units with
`wᵢ ~ N(0, I_D)` and fixed unit readouts (Kumar et al. train the first layer only), enters
centred and scaled (`jaxdyn.learning.AlphaScaled`): `f_α = α (f(w) − f(w₀))`. Full-batch
gradient descent on `L = (1/P) Σ_μ (f_α(x_μ) − y_μ)²` with step `η/α²`
(`jaxdyn.learning.alpha_learning_rate`; Kumar et al.'s `η = N`), through `jaxdyn.fit`.

Claims. Train loss falls before test loss (grokking in the loss): the network first fits the
training set lazily with its initial kernel, which cannot express `(β·x)²` from 550 samples,
and generalises only once its features align with `β` (`WᵀW` grows a spike along `β`).
Larger α delays the transition and keeps the kernel closer to `K₀`.

Measured (in `fit`'s `eval_fn`, every `train.chunk` steps): train and test loss; the relative
NTK change `‖K_t − K₀‖_F / ‖K₀‖_F` of the empirical NTK (`jaxdyn.learning.empirical_ntk`) on
the first `ntk_inputs` test points; the centred kernel–target alignment there; the relative
weight change; the alignment of the features with the teacher `‖Wβ‖² / ‖W‖₂²`; the entropy
effective ranks of `W` and of the kernel. Per α: the first evaluated step at which the train
and the test loss fall below `threshold` (resolved to `train.chunk` steps), their difference,
the NTK change at the train crossing and at the end.

Connectivity (`connectivity` section). At `connectivity.alpha`, the initial `W₀ = A B` with
`A: N × r`, `B: r × D` Gaussian, for each rank `r` in `connectivity.ranks` (`r = D` is a full
Gaussian `W₀`), every `W₀` rescaled to the same Frobenius norm `√(N D)`. Liu et al.'s claim:
lower-rank initial connectivity learns more richly (larger kernel and weight change). Reported
per rank: NTK and weight changes, effective ranks of `W` and `K` before and after, test loss.
"""

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, positive, positive_list, section
from ..learning import (
    NTK_METHODS,
    AlphaScaled,
    alpha_learning_rate,
    effective_rank,
    empirical_ntk,
    feature_alignment,
    kernel_alignment,
    ntk_change,
    weight_change,
)
from ..plotting import Figure
from ..train import fit
from ._registry import register


@dataclasses.dataclass
class DataConfig:
    inputs: int = at_least(100, 1)  # D
    train: int = at_least(550, 2)  # P training points
    test: int = at_least(1000, 2)  # fresh test points
    epsilon: float = positive(0.02)  # φ(h) = h + (ε/2) h²


@dataclasses.dataclass
class TrainConfig:
    hidden: int = at_least(500, 1)  # N
    learning_rate: float = positive(20_000.0)  # η before the 1/α² scaling
    steps: int = at_least(2500, 1)
    chunk: int = at_least(50, 1)  # steps per scan and between evaluations: the resolution


@dataclasses.dataclass
class ConnectivityConfig:
    alpha: float = positive(1.0)
    ranks: list = positive_list([1, 5, 20, 100], "ranks")  # r = inputs is full rank


@dataclasses.dataclass
class LazyRichConfig:
    experiment: str = "lazy_rich"
    seed: int = 0  # the data (β, train and test inputs) and the initialisation
    figures: bool = True
    alphas: list = positive_list([0.5, 1.0, 2.0], "output scales α")
    threshold: float = positive(0.1)  # the loss whose first crossing is reported
    ntk_inputs: int = at_least(100, 2)  # test points the kernel is measured on (the first)
    ntk_method: str = choice("jacobian", NTK_METHODS)
    data: DataConfig = section(DataConfig)
    train: TrainConfig = section(TrainConfig)
    connectivity: ConnectivityConfig = section(ConnectivityConfig)


def _check(cfg: DictConfig) -> None:
    if cfg.ntk_inputs > cfg.data.test:
        raise ConfigError(f"ntk_inputs={cfg.ntk_inputs} must be <= data.test={cfg.data.test}")
    for name, values in (("alphas", cfg.alphas), ("connectivity.ranks", cfg.connectivity.ranks)):
        if len(set(values)) != len(values):
            raise ConfigError(f"{name}={list(values)} repeats a value")
    bad = [r for r in cfg.connectivity.ranks if r != int(r) or r > cfg.data.inputs]
    if bad:
        raise ConfigError(
            f"connectivity.ranks={list(cfg.connectivity.ranks)}: each must be an integer "
            f"<= data.inputs={cfg.data.inputs}, got {bad}"
        )


class _Polynomial(eqx.Module):
    """`f(x) = (1/N) Σᵢ φ(wᵢ·x / √D)`, `φ(h) = h + (ε/2) h²` (readouts fixed at one)."""

    w: Float[Array, "hidden inputs"]
    epsilon: float = eqx.field(static=True)

    def __call__(self, x: Float[Array, " inputs"]) -> Float[Array, ""]:
        h = self.w @ x / jnp.sqrt(x.shape[0])
        return jnp.mean(h + 0.5 * self.epsilon * h**2)


def _key(prefix: str, value: float) -> str:
    """A summary key without dots (dotted paths read summaries): `0.5 → "alpha_0p5"`."""
    return f"{prefix}_" + f"{value:g}".replace(".", "p")


def _data(cfg: DictConfig, key) -> dict:
    kb, kx, kt = jax.random.split(key, 3)
    d = cfg.data
    beta = jax.random.normal(kb, (d.inputs,))
    beta = beta / jnp.linalg.norm(beta)
    x, xt = jax.random.normal(kx, (d.train, d.inputs)), jax.random.normal(kt, (d.test, d.inputs))
    return {"beta": beta, "x": x, "y": (x @ beta) ** 2 / 2, "xt": xt, "yt": (xt @ beta) ** 2 / 2}


def _low_rank(key, hidden: int, inputs: int, rank: int) -> Array:
    """`A B` (Gaussian factors `N × r`, `r × D`; a Gaussian `N × D` when `r = D`) rescaled
    to Frobenius norm `√(N D)`."""
    if rank == inputs:
        w = jax.random.normal(key, (hidden, inputs))
    else:
        ka, kb = jax.random.split(key)
        w = jax.random.normal(ka, (hidden, rank)) @ jax.random.normal(kb, (rank, inputs))
    return w * jnp.sqrt(hidden * inputs) / jnp.linalg.norm(w)


def _mse(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _train(cfg: DictConfig, data: dict, w0: Array, alpha: float, key) -> dict:
    """Full-batch GD of `AlphaScaled(_Polynomial(w0), alpha)` at `η/α²`; the measures at
    step 0 and every chunk."""
    model0 = AlphaScaled(_Polynomial(w0, float(cfg.data.epsilon)), alpha)
    x_ntk, y_ntk = data["xt"][: cfg.ntk_inputs], data["yt"][: cfg.ntk_inputs]

    def kernel(model):
        return empirical_ntk(model, x_ntk, method=cfg.ntk_method)

    k0 = kernel(model0)

    def measure(model, key=None):
        k, w = kernel(model), model.model.w
        return {
            "train_loss": _mse(model, (data["x"], data["y"]), None),
            "test_loss": _mse(model, (data["xt"], data["yt"]), None),
            "ntk_change": ntk_change(k, k0),
            "kernel_alignment": kernel_alignment(k, y_ntk),
            "weight_change": weight_change(model, model0),
            "feature_alignment": feature_alignment(w, data["beta"]),
            "weight_rank": effective_rank(w),
            "kernel_rank": effective_rank(k),
        }

    t = cfg.train
    optimizer = optax.sgd(alpha_learning_rate(t.learning_rate, alpha))
    result = fit(_mse, model0, (data["x"], data["y"]), optimizer, steps=t.steps,
                 batch_size=None, key=key, chunk=t.chunk, eval_fn=measure,
                 progress=False)  # fmt: skip
    first = {k: float(v) for k, v in eqx.filter_jit(measure)(model0).items()}
    rows = [first | {"step": 0}] + [
        {k.removeprefix("validation."): float(v) for k, v in e.items()} | {"step": int(e["step"])}
        for e in result.evaluations
    ]
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def _first_below(curve: dict, name: str, level: float) -> int | None:
    below = np.nonzero(curve[name] < level)[0]
    return int(curve["step"][below[0]]) if below.size else None


def _at(curve: dict, step: int | None, name: str) -> float | None:
    return None if step is None else float(curve[name][np.nonzero(curve["step"] == step)[0][0]])


def _alpha_row(curve: dict, threshold: float) -> dict:
    train, test = (_first_below(curve, f"{s}_loss", threshold) for s in ("train", "test"))
    return {
        "steps_to_threshold_train": train,
        "steps_to_threshold_test": test,
        "grokking_delay": None if None in (train, test) else test - train,
        "ntk_change_at_train_crossing": _at(curve, train, "ntk_change"),
        "final_ntk_change": float(curve["ntk_change"][-1]),
        "final_weight_change": float(curve["weight_change"][-1]),
        "initial_feature_alignment": float(curve["feature_alignment"][0]),
        "final_feature_alignment": float(curve["feature_alignment"][-1]),
        "initial_kernel_alignment": float(curve["kernel_alignment"][0]),
        "final_kernel_alignment": float(curve["kernel_alignment"][-1]),
        "final_train_loss": float(curve["train_loss"][-1]),
        "final_test_loss": float(curve["test_loss"][-1]),
    }


def _rank_row(curve: dict) -> dict:
    return {
        "final_ntk_change": float(curve["ntk_change"][-1]),
        "final_weight_change": float(curve["weight_change"][-1]),
        "initial_weight_rank": float(curve["weight_rank"][0]),
        "final_weight_rank": float(curve["weight_rank"][-1]),
        "initial_kernel_rank": float(curve["kernel_rank"][0]),
        "final_kernel_rank": float(curve["kernel_rank"][-1]),
        "initial_feature_alignment": float(curve["feature_alignment"][0]),
        "final_feature_alignment": float(curve["feature_alignment"][-1]),
        "final_test_loss": float(curve["test_loss"][-1]),
    }


def _decreasing(values: list) -> bool:
    return None not in values and all(a > b for a, b in zip(values, values[1:], strict=False))


@register("lazy_rich", LazyRichConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Grokking in the loss as the lazy-to-rich transition, over the output scale α (Kumar et
    al. 2024), and richer learning from lower-rank initial connectivity (Liu et al. 2024)."""
    data_key, init_key, train_key, rank_key = jax.random.split(jax.random.key(cfg.seed), 4)
    data = _data(cfg, data_key)
    d, n = cfg.data.inputs, cfg.train.hidden
    w0 = jax.random.normal(init_key, (n, d))
    alphas = sorted(float(a) for a in cfg.alphas)
    curves = {a: _train(cfg, data, w0, a, train_key) for a in alphas}
    per_alpha = {_key("alpha", a): _alpha_row(curves[a], cfg.threshold) for a in alphas}
    rows = [per_alpha[_key("alpha", a)] for a in alphas]
    tests = [r["steps_to_threshold_test"] for r in rows]
    ranks = sorted(int(r) for r in cfg.connectivity.ranks)
    rank_curves = {
        r: _train(cfg, data, _low_rank(jax.random.fold_in(rank_key, r), n, d, r),
                  float(cfg.connectivity.alpha), train_key)
        for r in ranks
    }  # fmt: skip
    per_rank = {f"rank_{r}": _rank_row(rank_curves[r]) for r in ranks}
    headline = ("steps_to_threshold_train", "steps_to_threshold_test", "grokking_delay",
                "ntk_change_at_train_crossing", "final_ntk_change",
                "final_feature_alignment")  # fmt: skip
    summary = {
        **{name: {k: r[name] for k, r in per_alpha.items()} for name in headline},
        "per_alpha": per_alpha,
        # the claims, each a yes/no over the α grid (sorted ascending)
        "train_before_test": all(
            None not in (r["steps_to_threshold_train"], r["steps_to_threshold_test"])
            and r["steps_to_threshold_train"] < r["steps_to_threshold_test"]
            for r in rows
        ),
        "larger_alpha_delays_test": None not in tests
        and all(a < b for a, b in zip(tests, tests[1:], strict=False)),
        "larger_alpha_lazier_at_train_crossing": _decreasing(
            [r["ntk_change_at_train_crossing"] for r in rows]
        ),
        "larger_alpha_lazier_at_end": _decreasing([r["final_ntk_change"] for r in rows]),
        "connectivity": {
            "alpha": float(cfg.connectivity.alpha),
            "final_ntk_change": {k: r["final_ntk_change"] for k, r in per_rank.items()},
            "final_weight_change": {k: r["final_weight_change"] for k, r in per_rank.items()},
            "per_rank": per_rank,
            # Liu et al.: lower rank → richer, i.e. the kernel change falls as the rank grows
            "lower_rank_richer": _decreasing(
                [per_rank[f"rank_{r}"]["final_ntk_change"] for r in ranks]
            ),  # fmt: skip
        },
        "threshold": float(cfg.threshold),
        "resolution_steps": int(cfg.train.chunk),
    }
    summary["target_met"] = bool(
        summary["train_before_test"]
        and summary["larger_alpha_delays_test"]
        and summary["larger_alpha_lazier_at_train_crossing"]
    )
    traces = {_key("alpha", a): {k: v.tolist() for k, v in c.items()} for a, c in curves.items()}
    traces |= {f"rank_{r}": {k: v.tolist() for k, v in c.items()} for r, c in rank_curves.items()}
    (run_dir / "curves.json").write_text(json.dumps(traces))
    if cfg.figures:
        _figure(run_dir, curves, rank_curves, cfg)
    return summary


def _figure(run_dir: Path, curves: dict, rank_curves: dict, cfg: DictConfig) -> None:
    fig = Figure(figsize=(11, 7.5))
    (loss, ntk), (feat, rank) = fig.subplots(2, 2, sharex=True)
    for i, (alpha, c) in enumerate(curves.items()):
        color = f"C{i}"
        loss.semilogy(c["step"], c["train_loss"], color=color, ls="--", lw=1)
        loss.semilogy(c["step"], c["test_loss"], color=color, lw=1.5, label=f"α = {alpha:g}")
        ntk.plot(c["step"], c["ntk_change"], color=color, lw=1.5, label=f"α = {alpha:g}")
        feat.plot(c["step"], c["feature_alignment"], color=color, lw=1.5,
                  label=f"features ‖Wβ‖²/‖W‖₂², α = {alpha:g}")  # fmt: skip
        feat.plot(c["step"], c["kernel_alignment"], color=color, ls=":", lw=1.2,
                  label=f"kernel–target (centred), α = {alpha:g}")  # fmt: skip
    loss.axhline(cfg.threshold, color="0.6", lw=0.8)
    loss.set(ylabel="MSE (dashed: train, solid: test)",
             title=f"Kumar et al. 2024: D = {cfg.data.inputs}, P = {cfg.data.train}, "
                   f"N = {cfg.train.hidden}, ε = {cfg.data.epsilon:g}")  # fmt: skip
    loss.legend(fontsize=8)
    ntk.set(ylabel="‖K_t − K₀‖_F / ‖K₀‖_F", title="NTK change")
    ntk.legend(fontsize=8)
    feat.set(xlabel="gradient descent step", ylabel="alignment")
    feat.legend(fontsize=7)
    for i, (r, c) in enumerate(rank_curves.items()):
        rank.plot(c["step"], c["ntk_change"], color=f"C{i}", lw=1.5, label=f"rank {r}")
    rank.set(xlabel="gradient descent step", ylabel="‖K_t − K₀‖_F / ‖K₀‖_F",
             title=f"rank of W₀ (equal ‖W₀‖_F), α = {cfg.connectivity.alpha:g}")  # fmt: skip
    rank.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "lazy_rich.png", dpi=120)

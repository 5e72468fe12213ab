"""Grokking modular addition with the quadratic network (Gromov 2023, "Grokking modular
arithmetic", arXiv:2301.02679; Kumar et al. 2024, "Grokking as the transition from lazy to
rich training dynamics").

Setting. Every pair `(n, m) ∈ Z_p²` one-hot encoded as `x = [e_n, e_m] ∈ R^{2p}` and labelled
`(n + m) mod p`; a fraction of the `p²` pairs trains (the split drawn from `data.split_seed`,
fixed across seeds), the rest tests. The network `f(x) = (1/N) W₂ ((1/√2p) W₁ x)²`
(`jaxdyn.learning.QuadraticNetwork`, entries `N(0, 1)`: the mean-field scaling of a public
PyTorch replication of Gromov's baseline experiments) is trained by full-batch gradient descent
(`optax.sgd(lr)`) on the mean squared error against one-hot targets, `L = (1/(n p)) Σ_μ ‖f(x_μ)
− e_{y_μ}‖²` (PyTorch's `mse_loss`, as in that replication and in Gromov's coauthor Doshi's
`d-doshi/Grokking`), through `jaxdyn.fit` (every step in a jitted `lax.scan` of `train.chunk`
steps). The seed draws the initialisation only.

Step size across p and N. In this parameterisation the gradient, and with it the sharpness
`λ_max` of the training loss at initialisation (the top Hessian eigenvalue, which sets gradient
descent's stability limit `2/λ_max`), shrinks fast with p and N (roughly as `1/(p³N)`: the
top eigenvector fits the targets' class-uniform mean `1/p`, mostly through the readout, whose
block alone has `λ_max ≈ 2/(N p³)`), so one `train.lr` is not one dynamics at every size.
`train.lr_sharpness = c` sets the step to `c · 2/λ_max`, `λ_max` measured at the seed's
initialisation by power iteration on `jaxdyn.learning.hessian_operator` (`sharpness`; reported
as `sharpness_init`, the step used as `lr`): the default's lr 100 at p = 23, N = 100 is
`c ≈ 2.1e-4` of its stability limit.

Measured. Train and test accuracy (argmax of `f`) every chunk, by `fit`'s `eval_fn`, and the
first evaluated step at which each reaches `threshold` (99%): `steps_to_99_train`,
`steps_to_99_test` (the end of the first chunk at or above it, so resolved to `train.chunk`
steps; `None` if never reached). At the same evaluations, the relative change of the
empirical NTK `‖K_t − K_0‖_F / ‖K_0‖_F` (`jaxdyn.learning.empirical_ntk`, output-averaged, on
a fixed subset of `ntk_inputs` training pairs) and of the weights
`‖W_t − W_0‖ / ‖W_0‖` (both layers stacked). Grokking is test accuracy crossing the threshold
well after train accuracy; Kumar et al. read it as the kernel leaving its initial value
(lazy → rich).

Fourier features. Gromov's analytic solution (`jaxdyn.learning.gromov_solution`) gives each
neuron's row of `W₁` a single frequency of `Z_p`. At the same evaluations, each row's power
over the frequencies `σ = 0..⌊p/2⌋` (`fourier_spectrum`, both one-hot halves) and its
concentration (`fourier_concentration`): the inverse participation ratio `Σ P² / (Σ P)²`
(1 for one frequency, about `1/F` for power spread over `F`) and the fraction of the power in
the row's largest frequency, both averaged over neurons; reported at initialisation and at the
end (`fourier_ipr_init` / `_final`, `fourier_top1_init` / `_final`), with the reference
`gromov_solution` values (1 and 1 by construction, measured). The figure `fourier.png` shows
the per-neuron spectra at initialisation and at the end.

Tian 2025's three stages (Li₂: "Provable scaling laws of feature emergence from learning
dynamics of grokking", arXiv:2509.21519). Stage I, lazy: the readout fits the random hidden
features while `W₁` stays near its initialisation and the backpropagated gradient
`G_F = −∂L/∂F` (`F` the hidden activations) is random. Stage II, independent feature
learning: `G_F ∝ ỸỸᵀF̃` (`Ỹ`, `F̃` centred over the pairs), so each hidden node `w_j` (row of
`W₁`) ascends its own energy `E(w) = ½ ‖Ỹᵀσ(Xw)‖²` (`jaxdyn.learning.li2_energy`, `σ(x) = x²`,
on the training pairs), whose local maxima on the sphere are single-frequency Fourier features.
Stage III, interactive feature learning: the nodes' features shape `G_F`, which leaves that
form, and the nodes no longer follow their own energies. Measured at the same evaluations:
`li2_alignment`, the mean over nodes of the cosine between node `j`'s actual descent direction
`−∂L/∂w_j` and `∇E(w_j)` (`li2_gradient_alignment`; ≈ 0 for a random `G_F`, 1 for exact
stage-II dynamics); `li2_energy`, the mean over nodes of `E(w_j / ‖w_j‖)` (the paper's
features are maxima on the unit sphere; the reference `li2_energy_gromov` is the same mean over
the rows of Gromov's solution, single Fourier frequencies, on the same training pairs); and
`hidden_weight_change`, `‖W₁ − W₁⁰‖ / ‖W₁⁰‖`. The criteria, with the threshold
`stage_threshold = 0.5` (cosine 0.5: 60°), fixed before any run: stage II begins at the first
evaluated step with `li2_alignment ≥ stage_threshold` (`li2_stage2_step`), stage III at the
first evaluated step after it with `li2_alignment < stage_threshold` (`li2_stage3_step`; a
single evaluation below the threshold dates it, as full-batch GD's curve is smooth);
stage I is step 0 to the stage-II onset (the train accuracy and hidden-weight change at that
onset are reported: the paper's stage I ends with the readout fitting and `W₁` near its start).
The figure `li2_stages.png`: the mean energy with the train and test accuracy, and the
alignment with the threshold and the two onsets.
Our setting is not the paper's: Tian's analysis needs weight decay `η` on the readout (it is
what makes `G_F` carry the labels in stage II) and a centred loss; Kumar et al.'s quadratic
network here has neither, so these are Tian's measures on our run, not a reproduction of his.
"""

import dataclasses
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, fraction, positive, section
from ..learning import (
    NTK_METHODS,
    QuadraticNetwork,
    empirical_ntk,
    fourier_concentration,
    fourier_spectrum,
    gromov_solution,
    hessian_operator,
    li2_energy,
    li2_gradient_alignment,
    modular_addition,
    power_iteration,
)
from ..plotting import Figure
from ..train import fit
from ._registry import register


@dataclasses.dataclass
class DataConfig:
    p: int = at_least(23, 2)  # the modulus: p² pairs, p classes
    train_fraction: float = fraction(0.9)  # of the p² pairs; the rest test
    split_seed: int = 0  # draws the split, the same for every seed


@dataclasses.dataclass
class TrainConfig:
    hidden: int = at_least(100, 1)  # N hidden units
    lr: float = positive(100.0)  # gradient descent step (the mean-field scaling needs it large)
    # null: use lr. A number c: the step is c * 2 / lambda_max, lambda_max the sharpness of the
    # training loss at the initialisation (lr is then unused): the same fraction of the
    # stability limit 2 / lambda_max at every p and N
    lr_sharpness: float | None = positive(None)
    steps: int = at_least(40_000, 1)
    chunk: int = at_least(100, 1)  # steps per scan and between evaluations: the resolution


@dataclasses.dataclass
class GrokkingModularConfig:
    experiment: str = "grokking_modular"
    seed: int = 0  # the initialisation
    figures: bool = True
    threshold: float = fraction(0.99)  # the accuracy whose first crossing is reported
    ntk_inputs: int = at_least(64, 1)  # training pairs the NTK is measured on (the first ones)
    ntk_method: str = choice("jvp", NTK_METHODS)  # empirical_ntk's method (jvp: fastest here)
    # Tian 2025's stage II begins when the mean node alignment cos(-dL/dw_j, grad E(w_j))
    # first reaches it, stage III when it next falls below it (fixed before any run)
    stage_threshold: float = fraction(0.5)
    data: DataConfig = section(DataConfig)
    train: TrainConfig = section(TrainConfig)


def _num_train(cfg: DictConfig) -> int:
    return int(round(cfg.data.train_fraction * cfg.data.p**2))


def _check(cfg: DictConfig) -> None:
    total, n = cfg.data.p**2, _num_train(cfg)
    if not 1 <= n < total:
        raise ConfigError(
            f"data.train_fraction={cfg.data.train_fraction} leaves {n} of the {total} pairs "
            "for training; at least one must train and one test"
        )
    if cfg.ntk_inputs > n:
        raise ConfigError(f"ntk_inputs={cfg.ntk_inputs} must be <= the {n} training pairs")


def split(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the training and test pairs, from `data.split_seed`."""
    order = np.random.default_rng(cfg.data.split_seed).permutation(cfg.data.p**2)
    n = _num_train(cfg)
    return np.sort(order[:n]), np.sort(order[n:])


def _mse(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def sharpness(model: QuadraticNetwork, x: jax.Array, y: jax.Array, *, key) -> tuple[float, float]:
    """`λ_max` of the Hessian of the training loss `_mse` at `model` (both layers) by power
    iteration on `jaxdyn.learning.hessian_operator` (to its default tolerance, √ε), and the
    relative residual `‖H v − λ v‖ / λ` reached. Power iteration finds the eigenvalue of
    largest magnitude: a negative one is refused (the step `c · 2/λ` would have no meaning)."""
    operator = hessian_operator(lambda m, x, y: _mse(m, (x, y), None), model, x, y)
    pairs, info = power_iteration(operator, key=key)
    lam = float(pairs.values[0])
    if lam <= 0:
        raise ValueError(f"the Hessian's eigenvalue of largest magnitude is {lam} <= 0")
    return lam, float(info.error)


def _first_crossing(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    above = np.nonzero(values >= level)[0]
    return int(steps[above[0]]) if above.size else None


def _flat(model) -> jnp.ndarray:
    return jnp.concatenate([jnp.ravel(model.w1), jnp.ravel(model.w2)])


@register("grokking_modular", GrokkingModularConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Grokking of modular addition by a quadratic network (Gromov 2023; Kumar et al. 2024),
    with the NTK and weight changes along training."""
    p, t = cfg.data.p, cfg.train
    x, labels = modular_addition(p)
    targets = jax.nn.one_hot(labels, p)
    train_idx, test_idx = split(cfg)
    x_train, y_train = x[train_idx], targets[train_idx]
    x_ntk = x_train[: cfg.ntk_inputs]
    model0 = QuadraticNetwork(2 * p, t.hidden, p, key=jax.random.key(cfg.seed))

    def ntk(model):
        return empirical_ntk(model, x_ntk, method=cfg.ntk_method)

    k0 = ntk(model0)
    w0 = _flat(model0)

    def accuracy(model, idx):
        return jnp.mean(jnp.argmax(jax.vmap(model)(x[idx]), -1) == labels[idx])

    @eqx.filter_jit
    def measure(model, key=None):
        return (
            {
                "train_accuracy": accuracy(model, train_idx),
                "test_accuracy": accuracy(model, test_idx),
                "ntk_change": jnp.linalg.norm(ntk(model) - k0) / jnp.linalg.norm(k0),
                "weight_change": jnp.linalg.norm(_flat(model) - w0) / jnp.linalg.norm(w0),
                "hidden_weight_change": jnp.linalg.norm(model.w1 - model0.w1)
                / jnp.linalg.norm(model0.w1),
            }
            | _concentration(model.w1, p)
            | _li2(model, x_train, y_train)
        )

    lam, lam_residual = None, None
    lr = t.lr
    if t.lr_sharpness is not None:
        key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
        lam, lam_residual = sharpness(model0, x_train, y_train, key=key)
        lr = t.lr_sharpness * 2 / lam
    start = time.perf_counter()
    result = fit(_mse, model0, (x_train, y_train), optax.sgd(lr), steps=t.steps,
                 batch_size=None, key=jax.random.key(cfg.seed), chunk=t.chunk,
                 eval_fn=measure, run_dir=run_dir,
                 checkpoint_every=t.steps // t.chunk + 1, resume=resume,
                 progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    first = {k: float(v) for k, v in measure(model0, jax.random.key(0)).items()}
    rows = [first | {"step": 0}] + [
        {k.removeprefix("validation."): float(v) for k, v in e.items()} | {"step": int(e["step"])}
        for e in result.evaluations
    ]
    curve = {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
    steps = curve["step"]
    crossing = {s: _first_crossing(steps, curve[f"{s}_accuracy"], cfg.threshold)
                for s in ("train", "test")}  # fmt: skip

    reached = None not in crossing.values()
    stage2, stage3 = _stage_onsets(steps, curve["li2_alignment"], cfg.stage_threshold)

    def at(step, key):
        return None if step is None else float(curve[key][np.nonzero(steps == step)[0][0]])

    summary = {
        "steps_to_99_train": crossing["train"],
        "steps_to_99_test": crossing["test"],
        "ntk_change_at_99_train": at(crossing["train"], "ntk_change"),
        "ntk_change_at_99_test": at(crossing["test"], "ntk_change"),
        "weight_change_at_99_train": at(crossing["train"], "weight_change"),
        "weight_change_at_99_test": at(crossing["test"], "weight_change"),
        "grokking_delay": None if not reached else crossing["test"] - crossing["train"],
        # grokking: both reached, and test only after train
        "target_met": bool(reached and crossing["test"] > crossing["train"]),
        "final_train_accuracy": float(curve["train_accuracy"][-1]),
        "final_test_accuracy": float(curve["test_accuracy"][-1]),
        "final_ntk_change": float(curve["ntk_change"][-1]),
        "final_weight_change": float(curve["weight_change"][-1]),
        "final_train_loss": float(result.losses[-1]),
        "fourier_ipr_init": float(curve["fourier_ipr"][0]),
        "fourier_ipr_final": float(curve["fourier_ipr"][-1]),
        "fourier_top1_init": float(curve["fourier_top1"][0]),
        "fourier_top1_final": float(curve["fourier_top1"][-1]),
        # the analytic solution's values (1, 1 by construction), at N = 9 (p - 1)/2 grid phases
        "fourier_ipr_gromov": _gromov_reference(p)["fourier_ipr"],
        # Tian 2025's stages by li2_alignment (the mean cosine of each node's gradient with
        # the ascent of its energy) crossing stage_threshold: II begins, then III
        "li2_stage2_step": stage2,
        "li2_stage3_step": stage3,
        "li2_alignment_init": float(curve["li2_alignment"][0]),
        "li2_alignment_max": float(curve["li2_alignment"].max()),
        "li2_alignment_final": float(curve["li2_alignment"][-1]),
        "train_accuracy_at_stage2": at(stage2, "train_accuracy"),
        "hidden_weight_change_at_stage2": at(stage2, "hidden_weight_change"),
        "li2_energy_init": float(curve["li2_energy"][0]),
        "li2_energy_at_stage3": at(stage3, "li2_energy"),
        "li2_energy_final": float(curve["li2_energy"][-1]),
        # the same mean energy over Gromov's single-frequency rows, on the same pairs
        "li2_energy_gromov": _gromov_energy(p, x_train, y_train),
        "num_frequencies": p // 2 + 1,
        "resolution_steps": int(t.chunk),
        "num_train_pairs": len(train_idx),
        "num_test_pairs": len(test_idx),
        "lr": lr,
        # with train.lr_sharpness: lambda_max at the initialisation, its relative residual
        "sharpness_init": lam,
        "sharpness_init_residual": lam_residual,
        "train_seconds": seconds,
    }
    notes = [f"{s} accuracy never reached {cfg.threshold} in {t.steps} steps"
             for s, v in crossing.items() if v is None]  # fmt: skip
    if notes:
        summary["note"] = "; ".join(notes)
    if cfg.figures:
        _figure(run_dir, curve, crossing, cfg)
        _fourier_figure(run_dir, model0.w1, result.model.w1, curve, cfg)
        _stages_figure(run_dir, curve, (stage2, stage3), summary["li2_energy_gromov"], cfg)
    return summary


def _concentration(w1, p: int) -> dict:
    ipr, top1 = fourier_concentration(fourier_spectrum(w1, p))
    return {"fourier_ipr": jnp.mean(ipr), "fourier_top1": jnp.mean(top1)}


def _li2(model, x, y) -> dict:
    """Tian's stage measure and mean normalised energy of the rows of `W₁` (`σ(x) = x²`; the
    network's `1/√2p` scaling changes neither a direction nor a normalised row's ranking)."""
    descent = -jax.grad(lambda w1: _mse(eqx.tree_at(lambda m: m.w1, model, w1), (x, y), None))(
        model.w1
    )
    rows = model.w1 / jnp.linalg.norm(model.w1, axis=1, keepdims=True)
    return {
        "li2_alignment": jnp.mean(li2_gradient_alignment(model.w1, descent, x, y)),
        "li2_energy": jnp.mean(li2_energy(rows, x, y)),
    }


def _stage_onsets(steps: np.ndarray, alignment: np.ndarray, level: float) -> tuple:
    """Stage II: the first step with `alignment ≥ level`; stage III: the first after it with
    `alignment < level` (`None` if not reached)."""
    above = np.nonzero(alignment >= level)[0]
    if not above.size:
        return None, None
    below = np.nonzero(alignment[above[0] :] < level)[0]
    return int(steps[above[0]]), (int(steps[above[0] + below[0]]) if below.size else None)


def _gromov_energy(p: int, x, y) -> float | None:
    if p % 2 == 0:
        return None
    w1 = gromov_solution(p, 9 * (p // 2)).w1
    rows = w1 / jnp.linalg.norm(w1, axis=1, keepdims=True)
    return float(jnp.mean(li2_energy(rows, x, y)))


def _gromov_reference(p: int) -> dict:
    if p % 2 == 0:
        return {"fourier_ipr": None}
    return {k: float(v) for k, v in _concentration(gromov_solution(p, 9 * (p // 2)).w1, p).items()}


def _figure(run_dir: Path, curve: dict, crossing: dict, cfg: DictConfig) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    steps = curve["step"]
    ax.plot(steps, curve["train_accuracy"], color="C0", label="train accuracy")
    ax.plot(steps, curve["test_accuracy"], color="C1", label="test accuracy")
    for name, color in (("train", "C0"), ("test", "C1")):
        if crossing[name] is not None:
            ax.axvline(crossing[name], color=color, ls=":", lw=1)
    ax.set(xlabel="gradient descent step", ylabel="accuracy", ylim=(-0.02, 1.02),
           title=f"Grokking (p = {cfg.data.p}, N = {cfg.train.hidden}, "
                 f"{cfg.data.train_fraction:.0%} of pairs train)")  # fmt: skip
    right = ax.twinx()
    right.plot(steps, curve["ntk_change"], color="k", lw=1.2, label="‖K_t − K_0‖ / ‖K_0‖")
    right.plot(steps, curve["weight_change"], color="0.5", lw=1, ls="--",
               label="‖W_t − W_0‖ / ‖W_0‖")  # fmt: skip
    right.set(ylabel="relative change")
    lines = ax.get_legend_handles_labels()
    extra = right.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "accuracy_ntk.png", dpi=120)


def _fourier_figure(run_dir: Path, w1_init, w1_final, curve: dict, cfg: DictConfig) -> None:
    p = cfg.data.p
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 3)
    for ax, w1, when in ((axes[0], w1_init, "initialisation"), (axes[1], w1_final, "end")):
        power = np.asarray(fourier_spectrum(w1, p))
        power = power / power.sum(1, keepdims=True)
        order = np.lexsort((-power.max(1), power.argmax(1)))  # by dominant frequency
        image = ax.imshow(power[order], aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")  # fmt: skip
        ax.set(xlabel="frequency σ", ylabel="neuron (by dominant σ)",
               title=f"W₁ row power, {when}")  # fmt: skip
    fig.colorbar(image, ax=axes[1], label="fraction of row power")
    steps = curve["step"]
    axes[2].plot(steps, curve["fourier_ipr"], color="C2", label="IPR (mean over neurons)")
    axes[2].plot(steps, curve["fourier_top1"], color="C3", label="top-frequency fraction")
    axes[2].plot(steps, curve["test_accuracy"], color="C1", lw=0.8, ls=":",
                 label="test accuracy")  # fmt: skip
    axes[2].set(xlabel="gradient descent step", ylim=(0, 1.02), title="concentration")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "fourier.png", dpi=120)


def _stages_figure(run_dir: Path, curve: dict, onsets: tuple, gromov: float | None, cfg) -> None:
    steps = curve["step"]
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    left.plot(steps, curve["li2_energy"], color="C2", label="mean E(w_j/‖w_j‖)")
    if gromov is not None:
        left.axhline(gromov, color="C2", ls="--", lw=1, label="Gromov's Fourier rows")
    left.set(xlabel="gradient descent step", ylabel="energy E (training pairs)",
             title="Li₂ energy of the hidden nodes")  # fmt: skip
    accuracy = left.twinx()
    accuracy.plot(steps, curve["train_accuracy"], color="C0", lw=1, label="train accuracy")
    accuracy.plot(steps, curve["test_accuracy"], color="C1", lw=1, label="test accuracy")
    accuracy.set(ylabel="accuracy", ylim=(-0.02, 1.02))
    lines = [a.get_legend_handles_labels() for a in (left, accuracy)]
    left.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=7,
                loc="center right")  # fmt: skip
    right.plot(steps, curve["li2_alignment"], color="k", label="mean cos(−∂L/∂w_j, ∇E(w_j))")
    right.axhline(cfg.stage_threshold, color="0.5", ls=":", lw=1, label="stage threshold")
    for ax in (left, right):
        for onset, name in zip(onsets, ("II", "III"), strict=True):
            if onset is not None:
                ax.axvline(onset, color="C3", ls="--", lw=0.8)
                ax.text(onset, 0.98, f" {name}", color="C3", transform=ax.get_xaxis_transform(),
                        va="top", fontsize=8)  # fmt: skip
    right.set(xlabel="gradient descent step", ylabel="alignment", ylim=(-1.02, 1.02),
              title="Tian's stages: node gradient vs its energy ascent")  # fmt: skip
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(run_dir / "li2_stages.png", dpi=120)

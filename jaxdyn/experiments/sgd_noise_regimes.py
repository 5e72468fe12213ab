"""SGD noise in the lazy and the rich regime (Sclocchi, Geiger & Wyart 2023, "Dissecting the
effects of SGD noise in distinct regimes of deep learning", ICML): where minibatch noise helps,
hurts or does nothing, as the output scale α moves a network between lazy and rich training.

Setting. The fc-tanh network of `sgd_stability` (one output, `depth` tanh hidden layers of
`width` units; the seed draws one initialisation shared by every run) wrapped as the centred
α-scaled model `f_α(w; x) = α (f(w; x) − f(w₀; x))` (`jaxdyn.learning.AlphaScaled`; Chizat,
Oyallon & Bach 2019), trained on the square loss `(1/2n) Σ_i (f_α(x_i) − y_i)²` against `y =
±1` (even / odd digit) on the first `n` standardised `load_digits` images, by SGD with batches
of `B` (`fit`'s epoch sampling) and by full-batch GD, every run with the learning rate
`alpha_learning_rate(η, α) = η/α²`, for `train.steps` steps. With that rate the function moves
on a time scale independent of α: large α is lazy (the weights move `O(1/α)`, the network
stays its linearisation at `w₀`), small α is rich (features move).

Claim (the paper's). The SGD noise is set by the temperature `T = η/B` (GD: `B = n`, the
noiseless limit). Its effect on the test error depends on the regime: in the lazy regime the
trained predictor is, to first order, the kernel interpolant of `K₀` whatever the noise, so
noise below a characteristic temperature does nothing; in the rich regime noise changes the
features learned and the test error, for better or worse. Reported per `(α, B)`: the test
accuracy on the held-out images, its change against GD at the same `α` and `η`
(`delta_test_accuracy`, SGD − GD; positive: noise helps), the relative weight change `‖w −
w₀‖ / ‖w₀‖` (small: lazy), the final training loss. `target_met` (fixed before the seeds were
run): the largest `|Δ|` over batch sizes is smaller at the lazy α than at the rich α, after the
same fixed budget of `train.steps` steps (a fixed-budget comparison: the lazy runs need not have
fitted the training set by then; see their `train_loss`).

Not reproduced here: the paper's phase diagrams over `(α, T)` on MNIST/CIFAR, its hinge loss
and training to zero training error (here a fixed number of steps on the square loss), and
the power law of the characteristic temperature in `n`.
"""

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from omegaconf import DictConfig

from ..config import ConfigError, at_least, positive, positive_list, section
from ..learning import AlphaScaled, alpha_learning_rate
from ..plotting import Figure
from ..train import fit
from . import _digits_curvature as digits
from ._registry import register


@dataclasses.dataclass
class SgdNoiseRegimesConfig:
    experiment: str = "sgd_noise_regimes"
    seed: int = 0  # the initial weights (shared by every run) and the batches
    figures: bool = True
    num_train: int = at_least(512, 2)  # the first n load_digits images
    num_test: int = at_least(1285, 1)  # the next ones: the held-out test split
    learning_rate: float = positive(0.05)  # η (of the function: the weights get η/α²)
    alphas: list[float] = positive_list([0.1, 10.0], "output scales α")
    batch_sizes: list[int] = dataclasses.field(default_factory=lambda: [64, 16, 4])  # SGD's B
    network: digits.TanhNetworkConfig = section(digits.TanhNetworkConfig)
    train: digits.StepsConfig = section(digits.StepsConfig)


def _check(cfg: DictConfig) -> None:
    digits.check_split_and_batches(cfg, full_batch=False)
    if len(set(cfg.alphas)) != len(cfg.alphas):
        raise ConfigError(f"alphas={list(cfg.alphas)} repeats a value")


def alpha_key(alpha: float) -> str:
    """`0.1 → "alpha_0p1"` (no dots: dotted paths read summaries)."""
    return "alpha_" + f"{alpha:g}".replace(".", "p")


def _relative_change(model: AlphaScaled) -> jnp.ndarray:
    """`‖w − w₀‖ / ‖w₀‖` over the network's floating-point arrays."""
    now = jax.tree.leaves(eqx.filter(model.model, eqx.is_inexact_array))
    start = jax.tree.leaves(eqx.filter(model.initial, eqx.is_inexact_array))
    moved = sum(jnp.sum((a - b) ** 2) for a, b in zip(now, start, strict=True))
    return jnp.sqrt(moved / sum(jnp.sum(b**2) for b in start))


def _train(cfg: DictConfig, model: AlphaScaled, train, test, batch_size: int | None, key) -> dict:
    """GD (`batch_size=None`) or SGD at `η/α²`; the scores every `train.chunk` steps."""

    def loss_fn(model, batch, key):
        return digits.square_loss(model, *batch)

    def eval_fn(model, key):
        return {**{f"train_{k}": v for k, v in digits.parity_scores(model, *train).items()},
                **{f"test_{k}": v for k, v in digits.parity_scores(model, *test).items()},
                "weight_change": _relative_change(model)}  # fmt: skip

    rate = alpha_learning_rate(float(cfg.learning_rate), model.alpha)
    result = fit(loss_fn, model, train, optax.sgd(rate), steps=cfg.train.steps,
                 batch_size=batch_size, key=key, chunk=cfg.train.chunk, eval_fn=eval_fn,
                 progress=False)  # fmt: skip
    rows = result.evaluations
    names = [k.removeprefix("validation.") for k in rows[-1] if k.startswith("validation.")]
    history = {name: [float(r[f"validation.{name}"]) for r in rows] for name in names}
    history["step"] = [int(r["step"]) for r in rows]
    return history


def _figure(run_dir: Path, histories: dict, rows: dict, cfg: DictConfig) -> None:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    temperatures = {f"B_{b}": cfg.learning_rate / b for b in cfg.batch_sizes}
    for i, (a_key, row) in enumerate(rows.items()):
        keys = sorted(temperatures, key=temperatures.get)
        t = [temperatures[k] for k in keys]
        delta = [100 * row[k]["delta_test_accuracy"] for k in keys]
        right.semilogx(t, delta, "o-", color=f"C{i}", label=f"α = {row['alpha']:g}")
        for j, (b_key, h) in enumerate(histories[a_key].items()):
            style = ["-", "--", ":", "-."][j % 4]
            left.plot(h["step"], h["test_accuracy"], color=f"C{i}", ls=style,
                      label=f"α = {row['alpha']:g}, {b_key}")  # fmt: skip
    right.axhline(0.0, color="k", lw=0.8)
    right.set(xlabel="temperature T = η/B", ylabel="test accuracy, SGD − GD (points)",
              title="Sclocchi et al. 2023: the effect of SGD noise")  # fmt: skip
    right.legend(fontsize=8)
    left.set(xlabel="step", ylabel="test accuracy", title="held-out digits (even / odd)")
    left.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(run_dir / "sgd_noise_regimes.png", dpi=120)


@register("sgd_noise_regimes", SgdNoiseRegimesConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """SGD against GD at one η in the lazy and the rich regime (Sclocchi et al. 2023)."""
    train, test = digits.parity_digits(cfg.num_train, cfg.num_test)
    key = jax.random.key(cfg.seed)
    init_key, train_key = jax.random.split(key)
    n = cfg.network
    base = eqx.nn.MLP(train[0].shape[1], 1, n.width, n.depth, activation=jnp.tanh, key=init_key)
    runs = [("gd", None), *((f"B_{b}", int(b)) for b in cfg.batch_sizes)]
    histories, rows = {}, {}
    for alpha in (float(a) for a in cfg.alphas):
        a_key = alpha_key(alpha)
        histories[a_key] = {
            name: _train(
                cfg, AlphaScaled(base, alpha), train, test, b, jax.random.fold_in(train_key, b or 0)
            )  # fmt: skip
            for name, b in runs
        }
        final = {name: {k: v[-1] for k, v in h.items()} for name, h in histories[a_key].items()}
        gd = final["gd"]["test_accuracy"]
        rows[a_key] = {"alpha": alpha}
        for name, b in runs:
            f = final[name]
            rows[a_key][name] = {
                "batch_size": b or cfg.num_train,
                "temperature": cfg.learning_rate / (b or cfg.num_train),
                "test_accuracy": f["test_accuracy"],
                "delta_test_accuracy": f["test_accuracy"] - gd,
                "train_loss": f["train_loss"],
                "weight_change": f["weight_change"],
            }
    effect = {a: max(abs(row[f"B_{b}"]["delta_test_accuracy"]) for b in cfg.batch_sizes)
              for a, row in rows.items()}  # fmt: skip
    lazy, rich = alpha_key(max(cfg.alphas)), alpha_key(min(cfg.alphas))
    summary = {
        "learning_rate": float(cfg.learning_rate),
        "largest_noise_effect": effect,
        "delta_test_accuracy": {
            a: {
                k: v["delta_test_accuracy"]
                for k, v in row.items()
                if isinstance(v, dict) and k != "gd"
            }
            for a, row in rows.items()
        },  # fmt: skip
        "weight_change_gd": {a: row["gd"]["weight_change"] for a, row in rows.items()},
        "per_alpha": rows,
        "target_met": bool(len(rows) > 1 and effect[lazy] < effect[rich]),
    }
    (run_dir / "histories.json").write_text(json.dumps(histories))
    if cfg.figures:
        _figure(run_dir, histories, rows, cfg)
    return summary

"""Time one neural-SDE training step: jaxdyn against raw Diffrax (virtual Brownian tree) and
torchsde.

What is measured: the wall time of ONE training step -- forward solve, backward pass and
an Adam update (learning rate 1e-3) -- on the workload

- drift and diagonal diffusion: two MLPs 4-64-64-4 with tanh (`jaxdyn.models.MLPField(dim=4,
  width=64, depth=2)`), float32; `dy = f(y) dt + g(y) ⊙ dW` (Itô, diagonal noise);
- batch: 256 initial states drawn from a standard normal, integrated over t in [0, 1];
- solver: Euler–Maruyama with fixed steps dt = 0.01 (100 steps);
- loss: mean squared terminal state, `mean(y(1)**2)`.

Contenders (all JAX contenders start from the same weights; the torch model is a copy of
them, so every contender solves the same SDE -- with a different Brownian path per library):

- `jaxdyn joint` / `jaxdyn vmap`: `jaxdyn.models.NeuralSDE(drift, diffusion,
  noise="diagonal", solver="euler", dt0=0.01, brownian="grid", batch="joint" | "vmap")`;
- `diffrax VBT`: the same model hand-written on `diffrax.diffeqsolve`:
  `MultiTerm(ODETerm(f), ControlTerm(g, VirtualBrownianTree(0, 1, tol=dt0/2,
  shape=(batch, 4), key)))` with an elementwise product (a `ControlTerm` whose `prod` is
  `vf * control`), the field vmapped over the batch inside one solve, Euler, dt0 = 0.01,
  `SaveAt(t1=True)`, `RecursiveCheckpointAdjoint`;
- `bare lax.scan`: the floor of any library here: the same Euler–Maruyama recursion
  hand-written as a `lax.scan` over 100 steps with the increments drawn up front (no Diffrax,
  no Brownian path object), backpropagated by JAX through the scan;
- `torchsde sdeint` / `torchsde sdeint_adjoint`: `torchsde.sdeint(..., method="euler",
  dt=0.01)` with `noise_type="diagonal"`, `sde_type="ito"` and a fresh
  `torchsde.BrownianInterval(..., dt=0.01)` per step (times in float64, so that it takes
  exactly 100 steps; backpropagation through the solver), and the
  stochastic adjoint (its default adjoint method for Itô diagonal noise, Milstein); only if
  torch and torchsde import.

How: every JAX step is one `eqx.filter_jit` function (model, optimiser state, y0 and key in;
new model, state and loss out) sharing the same step code, so only the solve differs; the
first call is reported as the compile time. Every repetition runs the same computation --
the first Adam step from the initial weights, a fresh optimiser state and the same key
(torch: the same `BrownianInterval` entropy). After warm-up, the contenders are timed
round-robin (one repetition of each per round, in a shuffled order), so that noise on a
shared machine falls on all of them alike. Reported: median, interquartile range and
min-max; jaxdyn over raw Diffrax and over the bare scan (ratio of medians, and the median of
the per-round ratios, which is less sensitive to drifting machine load); torchsde over jaxdyn
joint, likewise.
torch runs with `--torch-threads` threads (default: all cores) on `--device` (default: cuda
when torch sees one, else cpu; model, data, times and Brownian interval on it, the same dtypes);
on CUDA each timed call ends with `torch.cuda.synchronize()`, as each JAX call ends with
`block_until_ready`. The record names both sides' devices.

Sanity check (always, before timing): with the diffusion's last layer set to zero (g = 0,
so every contender solves the same ODE by Euler whatever its Brownian path), every
contender's loss must agree with jaxdyn joint's to a relative 1e-4 (float32, 100 steps; the
JAX steps are reused without recompiling, as only weights change). The losses with the real
diffusion at the fixed key are printed too. `--check` also runs every contender on
`--check-keys` different keys (torch: entropies) and compares the mean losses with jaxdyn
joint's: the paths differ between libraries, so they must agree within sampling error
(asserted: |z| < 5, z the difference over its standard error).

Run: `python benchmarks/neural_sde_step.py [--reps 30] [--batch 256] [--check]
[--device cpu|cuda] [--quick]`. Writes `benchmarks/out/neural_sde_step.json`.
"""

from pathlib import Path

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    JointField,
    fmt,
    jax_step_contender,
    parse_step_args,
    print_table,
    record_header,
    spread,
    time_call,
    time_step_contenders,
    torch_mlp,
    torch_record,
    torch_synchronised,
    verdict,
    write_record,
)

from jaxdyn.models import MLPField, NeuralSDE

OUT = Path(__file__).resolve().parent / "out" / "neural_sde_step.json"
DIM, WIDTH, DEPTH = 4, 64, 2
DT0 = 0.01
LR = 1e-3
T0, T1 = 0.0, 1.0
TS = jnp.array([T0, T1], dtype=jnp.float32)
ZERO_DIFFUSION_RTOL = 1e-4  # float32 Euler, 100 steps, different matmul kernels


# --------------------------------------------------------------------------- JAX models


class DiagonalControlTerm(dfx.ControlTerm):
    """`g(t, y) ⊙ dW`: diagonal noise, an elementwise product of field and control."""

    def prod(self, vf, control):
        return vf * control


class RawSDE(eqx.Module):
    """The neural SDE written directly on `diffrax.diffeqsolve` with a virtual Brownian tree
    over the whole batch; returns the `Solution` with y(t1)."""

    drift: MLPField
    diffusion: MLPField

    def solution(self, y0, key):
        brownian = dfx.VirtualBrownianTree(T0, T1, tol=DT0 / 2, shape=y0.shape, key=key)
        terms = dfx.MultiTerm(
            dfx.ODETerm(JointField(self.drift)),
            DiagonalControlTerm(JointField(self.diffusion), brownian),
        )
        return dfx.diffeqsolve(
            terms,
            dfx.Euler(),
            T0,
            T1,
            DT0,
            y0,
            saveat=dfx.SaveAt(t1=True),
            adjoint=dfx.RecursiveCheckpointAdjoint(),
        )

    def __call__(self, y0, key):
        return self.solution(y0, key).ys[0]  # (batch, dim)


class BareScanSDE(eqx.Module):
    """The same Euler–Maruyama recursion as a bare `lax.scan`: `y ← y + f(y) dt + g(y) ⊙ √dt ξ`
    with the `ξ` drawn up front."""

    drift: MLPField
    diffusion: MLPField

    def __call__(self, y0, key):
        steps = round((T1 - T0) / DT0)
        noise = jnp.sqrt(DT0) * jax.random.normal(key, (steps, *y0.shape), y0.dtype)
        f, g = JointField(self.drift), JointField(self.diffusion)

        def step(y, dw):
            return y + f(None, y, None) * DT0 + g(None, y, None) * dw, None

        return jax.lax.scan(step, y0, noise)[0]


def jaxdyn_loss(model: NeuralSDE, y0, key):
    y1 = model(TS, y0, key=key)[:, -1]  # TS closed over: the step grid is built at trace time
    return jnp.mean(y1**2)


def raw_loss(model: RawSDE, y0, key):
    return jnp.mean(model(y0, key) ** 2)


def zero_last_layer(field: MLPField) -> MLPField:
    """The field with its output layer zeroed: it returns 0 everywhere (same structure)."""
    last = lambda f: (f.mlp.layers[-1].weight, f.mlp.layers[-1].bias)  # noqa: E731
    return eqx.tree_at(last, field, replace_fn=jnp.zeros_like)


def steps_summary(num_steps) -> str:
    num_steps = np.asarray(num_steps)
    if num_steps.ndim == 0 or num_steps.min() == num_steps.max():
        return f"{int(num_steps.flat[0])}"
    return f"{int(num_steps.min())}-{int(num_steps.max())} (per sample)"


# --------------------------------------------------------------------------- torch models


def torch_contenders(drift, diffusion, zero_diffusion, y0, seed: int, threads: int, device: str):
    """torchsde contenders on a copy of the JAX weights, on `device`; [] and a note if
    unavailable."""
    try:
        import torch
        import torchsde
    except ImportError as error:
        return [], f"torch/torchsde not available ({error}); torch contenders skipped"

    torch.set_num_threads(threads)

    class SDE(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def __init__(self):
            super().__init__()
            self.drift = torch_mlp(torch, drift)
            self.diffusion = torch_mlp(torch, diffusion)
            self.nfe = 0

        def f(self, t, y):
            self.nfe += 1
            return self.drift(y)

        def g(self, t, y):
            return self.diffusion(y)

    sde = SDE().to(device)
    initial = {k: v.clone() for k, v in sde.state_dict().items()}
    zero = dict(initial)
    zero_net = torch_mlp(torch, zero_diffusion).to(device).state_dict()
    zero.update({f"diffusion.{k}": v.clone() for k, v in zero_net.items()})
    y0_t = torch.from_numpy(np.array(y0)).to(device)
    # float64 times: torchsde steps `t += dt` in the dtype of ts; in float32 that ends just
    # short of 1 and adds a 101st step of ~1e-7 (see `make`).
    ts = torch.tensor([T0, T1], dtype=torch.float64, device=device)

    def make(name, sdeint):
        state = {}

        def reset(weights=initial):  # untimed: the same first Adam step from the same weights
            sde.load_state_dict(weights)
            state["opt"] = torch.optim.Adam(sde.parameters(), lr=LR)

        def step(entropy=seed):
            opt = state["opt"]
            opt.zero_grad(set_to_none=True)
            # `dt` is the documented step-size hint that sizes the interval's dependency tree
            # up front. Without it the tree is sized from observed query lengths, and with
            # float32 times the ~1e-7 last step made it split [0, 1] ~50,000 times: 1.2 s a
            # step instead of ~0.05 s.
            bm = torchsde.BrownianInterval(
                t0=T0,
                t1=T1,
                size=tuple(y0_t.shape),
                dtype=y0_t.dtype,
                device=y0_t.device,
                entropy=entropy,
                dt=DT0,
            )
            ys = sdeint(sde, y0_t, ts, bm=bm, method="euler", dt=DT0)
            loss = torch.mean(ys[-1] ** 2)
            loss.backward()
            opt.step()
            return loss

        def loss(zero_=False, key_=seed):
            reset(zero if zero_ else initial)
            return float(step(key_).item())

        reset, step = (torch_synchronised(torch, device, fn) for fn in (reset, step))
        reset()
        sde.nfe = 0
        first_s = time_call(step)
        return {
            "name": name,
            "run": step,
            "reset": reset,
            "loss": loss,
            "compile_s": None,
            "first_call_s": first_s,
            "solver_steps": f"{sde.nfe} drift evaluations (1 is a shape check)",
        }

    return [
        make("torchsde sdeint", torchsde.sdeint),
        make("torchsde sdeint_adjoint", torchsde.sdeint_adjoint),
    ], None


# --------------------------------------------------------------------------- benchmark


def sanity_check(contenders, check_keys: int, seed: int) -> dict:
    """Zero diffusion: all losses equal (asserted). Real diffusion: losses at the fixed key,
    and (if `check_keys`) loss statistics over that many keys per contender."""
    reference = "jaxdyn joint"
    record = {"zero_diffusion_loss": {}, "loss_at_fixed_key": {}}
    for c in contenders:
        record["zero_diffusion_loss"][c["name"]] = c["loss"](True)
        record["loss_at_fixed_key"][c["name"]] = c["loss"](False)
    ref = record["zero_diffusion_loss"][reference]
    worst = max(abs(v - ref) / abs(ref) for v in record["zero_diffusion_loss"].values())
    record["zero_diffusion_max_rel_diff"] = worst
    for name, value in record["zero_diffusion_loss"].items():
        print(f"zero diffusion: {name:26s} loss {value:.7f}")
    print(f"zero diffusion: max relative difference {worst:.2e} (tolerance {ZERO_DIFFUSION_RTOL})")
    assert worst <= ZERO_DIFFUSION_RTOL, "contenders disagree at zero diffusion"
    for name, value in record["loss_at_fixed_key"].items():
        print(f"fixed key:      {name:26s} loss {value:.5f}")
    if check_keys:
        stats = {}
        for c in contenders:
            jax_key = jax.random.key(seed + 1)
            if c["name"].startswith("torchsde"):
                values = [c["loss"](False, seed + 1 + i) for i in range(check_keys)]
            else:
                keys = jax.random.split(jax_key, check_keys)
                values = [c["loss"](False, k) for k in keys]
            values = np.asarray(values)
            stats[c["name"]] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)),
                "sem": float(values.std(ddof=1) / np.sqrt(len(values))),
                "keys": check_keys,
            }
        ref_stats = stats[reference]
        for name, s in stats.items():
            z = (s["mean"] - ref_stats["mean"]) / np.hypot(s["sem"], ref_stats["sem"])
            s["z_vs_jaxdyn_joint"] = None if name == reference else float(z)
            print(
                f"{check_keys} keys:        {name:26s} loss {s['mean']:.5f} ± {s['sem']:.5f} "
                f"(std {s['std']:.5f})" + ("" if name == reference else f", z = {z:+.2f}")
            )
        record["loss_over_keys"] = stats
        worst_z = max(abs(s["z_vs_jaxdyn_joint"] or 0.0) for s in stats.values())
        assert worst_z < 5.0, f"mean losses over keys disagree (|z| = {worst_z:.1f})"
    return record


def summarise(contenders) -> list[dict]:
    times = {c["name"]: np.asarray(c["times"]) for c in contenders}
    medians = {name: float(np.median(t)) for name, t in times.items()}

    def ratios(name, other):
        if name not in times or other not in times:
            return None, None
        return medians[name] / medians[other], float(np.median(times[name] / times[other]))

    rows = []
    for c in contenders:
        ms = times[c["name"]] * 1e3
        name = c["name"]
        vs_vbt = paired_vbt = over_jaxdyn = paired_over = vs_bare = paired_bare = None
        if name.startswith("jaxdyn"):
            vs_vbt, paired_vbt = ratios(name, "diffrax VBT")
            vs_bare, paired_bare = ratios(name, "bare lax.scan")
        if name.startswith("torchsde"):
            over_jaxdyn, paired_over = ratios(name, "jaxdyn joint")
        rows.append(
            {
                "contender": name,
                **spread(ms, "ms"),
                "ratio_vs_diffrax_vbt": vs_vbt,
                "paired_ratio_vs_diffrax_vbt": paired_vbt,
                "ratio_vs_bare_scan": vs_bare,
                "paired_ratio_vs_bare_scan": paired_bare,
                "ratio_torchsde_over_jaxdyn_joint": over_jaxdyn,
                "paired_ratio_torchsde_over_jaxdyn_joint": paired_over,
                "compile_s": c.get("compile_s"),
                "first_call_s": c.get("first_call_s"),
                "solver_steps": c.get("solver_steps"),
                "times_ms": [float(x) for x in ms],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| contender | median ms | IQR ms | min–max ms | jaxdyn / diffrax VBT (paired) "
        "| torchsde / jaxdyn joint (paired) | compile s | solver steps |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['contender']} | {r['median_ms']:.2f} "
            f"| {r['q25_ms']:.2f}–{r['q75_ms']:.2f} | {r['min_ms']:.2f}–{r['max_ms']:.2f} "
            f"| {fmt(r['ratio_vs_diffrax_vbt'], '.3f')} "
            f"({fmt(r['paired_ratio_vs_diffrax_vbt'], '.3f')}) "
            f"| {fmt(r['ratio_torchsde_over_jaxdyn_joint'], '.2f')} "
            f"({fmt(r['paired_ratio_torchsde_over_jaxdyn_joint'], '.2f')}) "
            f"| {fmt(r['compile_s'], '.1f')} | {r['solver_steps']} |"
        )
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> dict:
    """jaxdyn joint 3x faster than raw Diffrax (VBT) and 10x faster than torchsde."""
    by_name = {r["contender"]: r for r in rows}
    targets = {}
    joint = by_name["jaxdyn joint"]
    speedup = 1.0 / joint["ratio_vs_diffrax_vbt"]
    targets["jaxdyn joint >= 3x faster than diffrax VBT"] = {
        "ratio": speedup,
        "paired_ratio": 1.0 / joint["paired_ratio_vs_diffrax_vbt"],
        "met": speedup >= 3.0,
    }
    if "torchsde sdeint" in by_name:
        name = min(
            ("torchsde sdeint", "torchsde sdeint_adjoint"),
            key=lambda n: by_name[n]["ratio_torchsde_over_jaxdyn_joint"],
        )
        speedup = by_name[name]["ratio_torchsde_over_jaxdyn_joint"]
        targets["jaxdyn joint >= 10x faster than torchsde"] = {
            "ratio": speedup,
            "paired_ratio": by_name[name]["paired_ratio_torchsde_over_jaxdyn_joint"],
            "against": name,
            "met": speedup >= 10.0,
        }
    for name, result in targets.items():
        print(
            f"target {name}: {result['ratio']:.2f}x (paired {result['paired_ratio']:.2f}x) "
            f"-> {verdict(result['met'])}"
        )
    return targets


def check_arguments(parser) -> None:
    """`--check` and `--check-keys` (before `--quick`, as they always were)."""
    parser.add_argument("--check", action="store_true", help="also compare losses over keys")
    parser.add_argument("--check-keys", type=int, default=32, help="keys for --check")


def jax_contenders(drift, diffusion, zero_diffusion, y0, step_key) -> list[dict]:
    """jaxdyn with the batch solved jointly and vmapped, and raw Diffrax with a VBT."""
    contenders = []
    for batch in ("joint", "vmap"):

        def build(g, batch=batch):
            return NeuralSDE(
                drift,
                g,
                noise="diagonal",
                solver="euler",
                dt0=DT0,
                brownian="grid",
                batch=batch,
            )

        model = build(diffusion)
        contenders.append(
            jax_step_contender(
                f"jaxdyn {batch}",
                model,
                jaxdyn_loss,
                y0,
                step_key,
                lambda m=model: steps_summary(
                    eqx.filter_jit(lambda m, y, k: m.solve(TS, y, key=k).stats.num_steps)(
                        m, y0, step_key
                    )
                ),
                lr=LR,
                zero_model=build(zero_diffusion),
            )
        )
    raw = RawSDE(drift, diffusion)
    contenders.append(
        jax_step_contender(
            "diffrax VBT",
            raw,
            raw_loss,
            y0,
            step_key,
            lambda: steps_summary(
                eqx.filter_jit(lambda m, y, k: m.solution(y, k).stats["num_steps"])(
                    raw, y0, step_key
                )
            ),
            lr=LR,
            zero_model=RawSDE(drift, zero_diffusion),
        )
    )
    bare = BareScanSDE(drift, diffusion)
    contenders.append(
        jax_step_contender(
            "bare lax.scan",
            bare,
            raw_loss,
            y0,
            step_key,
            lambda: steps_summary(round((T1 - T0) / DT0)),
            lr=LR,
            zero_model=BareScanSDE(drift, zero_diffusion),
        )  # fmt: skip
    )
    return contenders


def workload(args) -> dict:
    return {
        "drift": f"MLP {DIM}-{WIDTH}-{WIDTH}-{DIM} tanh",
        "diffusion": f"MLP {DIM}-{WIDTH}-{WIDTH}-{DIM} tanh, diagonal noise",
        "calculus": "ito",
        "batch": args.batch,
        "t": [T0, T1],
        "solver": "euler",
        "dt0": DT0,
        "optimizer": f"adam lr={LR}",
        "dtype": "float32",
        "loss": "mean(y(1)**2)",
    }


def main() -> None:
    args = parse_step_args(__doc__.splitlines()[0], OUT, check_arguments)
    key = jax.random.key(args.seed)
    drift_key, diffusion_key, data_key, step_key = jax.random.split(key, 4)
    sizes = dict(dim=DIM, width=WIDTH, depth=DEPTH, activation="tanh")
    drift = MLPField(**sizes, key=drift_key)
    diffusion = MLPField(**sizes, key=diffusion_key)
    zero_diffusion = zero_last_layer(diffusion)
    y0 = jax.random.normal(data_key, (args.batch, DIM), dtype=jnp.float32)
    assert y0.dtype == jnp.float32, "run without jax_enable_x64: the benchmark is float32"

    contenders = jax_contenders(drift, diffusion, zero_diffusion, y0, step_key)
    torch_list, note = torch_contenders(
        drift,
        diffusion,
        zero_diffusion,
        np.asarray(y0),
        args.seed,
        args.torch_threads,
        args.device,
    )
    contenders += torch_list
    if note:
        print(note)

    check = sanity_check(contenders, args.check_keys if args.check else 0, args.seed)

    elapsed = time_step_contenders(contenders, args)
    rows = summarise(contenders)
    table = markdown(rows)
    print_table(table)
    targets = check_targets(rows)

    record = {
        **record_header("neural_sde_step", "torch", "torchsde"),
        "workload": workload(args),
        **torch_record(torch_list, args),
        "solver_steps_note": (
            "JAX: diffrax num_steps of the forward solve; torch: calls of the drift (forward "
            "solve, plus the adjoint solve for sdeint_adjoint)"
        ),
        "reps": args.reps,
        "warmup": args.warmup,
        "quick": args.quick,
        "timing_wall_s": elapsed,
        "note": note,
        "sanity_check": check,
        "results": rows,
        "targets": targets,
        "table_markdown": table,
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()

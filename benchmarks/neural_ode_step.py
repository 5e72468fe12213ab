"""Time one neural-ODE training step: jaxdyn against raw Diffrax and torchdiffeq.

What is measured: the wall time of ONE training step -- forward solve, backward pass and
an Adam update (learning rate 1e-3) -- on the workload

- field: MLP 2-64-64-2 with tanh (`jaxdyn.models.MLPField(dim=2, width=64, depth=2)`), float32;
- batch: 256 initial states drawn from a standard normal, integrated over t in [0, 1];
- solver: Dopri5 with a PID step-size controller, rtol = atol = 1e-5;
- loss: mean squared error between y(1) and the reversed initial state `y0[:, ::-1]`.

Contenders (all JAX contenders start from the same weights; the torch model is a copy of
them, so every contender solves the same problem):

- `jaxdyn vmap` / `jaxdyn joint`: `jaxdyn.models.NeuralODE(..., batch="vmap" | "joint")`;
- `diffrax vmap` / `diffrax joint`: the same model hand-written on `diffrax.diffeqsolve`
  (Dopri5, PIDController, SaveAt(t1=True), RecursiveCheckpointAdjoint). `vmap` vmaps the
  whole solve over the batch (each sample its own steps); `joint` vmaps the field inside a
  single solve (one step sequence for the batch), as jaxdyn's `batch="joint"` does;
- `torchdiffeq odeint` / `torchdiffeq odeint_adjoint`: backpropagation through the solver
  and the continuous adjoint (only if torch and torchdiffeq import).

How: every JAX step is one `eqx.filter_jit` function (model and optimiser state in, new model
and state out) sharing the same step code, so only the solve differs; the first call is
reported as the compile time. Every repetition runs the same computation -- the first Adam
step from the initial weights and a fresh optimiser state -- so the number of solver steps
is the same in every repetition. After warm-up, the contenders are timed round-robin (one
repetition of each per round, in a shuffled order), so that noise on a shared machine
falls on all of them alike. Reported: median, interquartile range and min-max over the
repetitions; the ratio of each jaxdyn median to its raw-Diffrax twin's, and the median of
the per-round ratios (paired, less sensitive to drifting machine load); the ratio of each
torchdiffeq median to jaxdyn joint's. torch runs with `--torch-threads` threads (default:
all cores) on `--device` (default: cuda when torch sees one, else cpu; model, data and times
on it, float32 as on JAX's side); on CUDA each timed call ends with `torch.cuda.synchronize()`,
as each JAX call ends with `block_until_ready`. The record names both sides' devices.

Run: `python benchmarks/neural_ode_step.py [--reps 30] [--batch 256] [--device cpu|cuda]
[--quick]`. Writes `benchmarks/out/neural_ode_step.json`.
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

from jaxdyn.models import MLPField, NeuralODE

OUT = Path(__file__).resolve().parent / "out" / "neural_ode_step.json"
DIM, WIDTH, DEPTH = 2, 64, 2
RTOL = ATOL = 1e-5
LR = 1e-3
T0, T1 = 0.0, 1.0
MAX_STEPS = 4096  # jaxdyn's and Diffrax's default


# --------------------------------------------------------------------------- JAX models


class RawODE(eqx.Module):
    """The neural ODE written directly on `diffrax.diffeqsolve`; returns y(t1)."""

    field: MLPField
    joint: bool = eqx.field(static=True)

    def _solve(self, vector_field, y0):
        return dfx.diffeqsolve(
            dfx.ODETerm(vector_field),
            dfx.Dopri5(),
            T0,
            T1,
            None,
            y0,
            saveat=dfx.SaveAt(t1=True),
            stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
            adjoint=dfx.RecursiveCheckpointAdjoint(),
            max_steps=MAX_STEPS,
        )

    def solution(self, y0):
        if self.joint:
            return self._solve(JointField(self.field), y0)
        return jax.vmap(lambda y: self._solve(self.field, y))(y0)

    def __call__(self, y0):
        ys = self.solution(y0).ys  # (1, batch, dim) joint; (batch, 1, dim) vmap
        return ys[0] if self.joint else ys[:, 0]


def jaxdyn_loss(model: NeuralODE, y0, target):
    ts = jnp.array([T0, T1], dtype=y0.dtype)
    y1 = model(ts, y0)[:, -1]
    return jnp.mean((y1 - target) ** 2)


def raw_loss(model: RawODE, y0, target):
    return jnp.mean((model(y0) - target) ** 2)


def steps_summary(num_steps) -> str:
    num_steps = np.asarray(num_steps)
    if num_steps.ndim == 0:
        return f"{int(num_steps)}"
    return f"{int(num_steps.min())}-{int(num_steps.max())} (per sample)"


# --------------------------------------------------------------------------- torch models


def torch_contenders(
    field: MLPField, y0: np.ndarray, target: np.ndarray, threads: int, device: str
):
    """torchdiffeq contenders on a copy of the JAX weights, on `device`; [] and a note if
    unavailable."""
    try:
        import torch
        import torchdiffeq
    except ImportError as error:
        return [], f"torch/torchdiffeq not available ({error}); torch contenders skipped"

    torch.set_num_threads(threads)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_mlp(torch, field)
            self.nfe = 0

        def forward(self, t, y):
            self.nfe += 1
            return self.net(y)

    func = Field().to(device)
    initial = {k: v.clone() for k, v in func.state_dict().items()}
    y0_t = torch.from_numpy(np.array(y0)).to(device)
    target_t = torch.from_numpy(np.array(target)).to(device)
    ts = torch.tensor([T0, T1], dtype=torch.float32, device=device)

    def make(name, odeint):
        state = {}

        def reset():  # untimed: the same first Adam step from the same weights each time
            func.load_state_dict(initial)
            state["opt"] = torch.optim.Adam(func.parameters(), lr=LR)

        def step():
            opt = state["opt"]
            opt.zero_grad(set_to_none=True)
            y1 = odeint(func, y0_t, ts, rtol=RTOL, atol=ATOL, method="dopri5")[-1]
            loss = torch.mean((y1 - target_t) ** 2)
            loss.backward()
            opt.step()

        reset, step = (torch_synchronised(torch, device, fn) for fn in (reset, step))
        reset()
        func.nfe = 0
        first_s = time_call(step)
        return {
            "name": name,
            "run": step,
            "reset": reset,
            "compile_s": None,
            "first_call_s": first_s,
            "solver_steps": f"{func.nfe} field evaluations",
        }

    return [
        make("torchdiffeq odeint", torchdiffeq.odeint),
        make("torchdiffeq odeint_adjoint", torchdiffeq.odeint_adjoint),
    ], None


# --------------------------------------------------------------------------- benchmark


TWINS = {"jaxdyn vmap": "diffrax vmap", "jaxdyn joint": "diffrax joint"}


def summarise(contenders) -> list[dict]:
    times = {c["name"]: c["times"] for c in contenders}
    medians = {name: float(np.median(t)) for name, t in times.items()}
    rows = []
    for c in contenders:
        ms = np.asarray(c["times"]) * 1e3
        name = c["name"]
        twin = TWINS.get(name)
        vs_twin = paired = None
        if twin in medians:
            vs_twin = medians[name] / medians[twin]
            # Same round, same machine state: the median of per-round ratios is less noisy.
            paired = float(np.median(np.asarray(c["times"]) / np.asarray(times[twin])))
        vs_joint = None
        if name.startswith("torchdiffeq") and "jaxdyn joint" in medians:
            vs_joint = medians[name] / medians["jaxdyn joint"]
        rows.append(
            {
                "contender": name,
                **spread(ms, "ms"),
                "ratio_vs_raw_diffrax_twin": vs_twin,
                "paired_ratio_vs_raw_diffrax_twin": paired,
                "ratio_torchdiffeq_over_jaxdyn_joint": vs_joint,
                "compile_s": c.get("compile_s"),
                "first_call_s": c.get("first_call_s"),
                "solver_steps": c.get("solver_steps"),
                "times_ms": [float(x) for x in ms],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| contender | median ms | IQR ms | min–max ms | vs raw diffrax twin "
        "| (paired) | torchdiffeq / jaxdyn joint | compile s | solver steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['contender']} | {r['median_ms']:.2f} "
            f"| {r['q25_ms']:.2f}–{r['q75_ms']:.2f} | {r['min_ms']:.2f}–{r['max_ms']:.2f} "
            f"| {fmt(r['ratio_vs_raw_diffrax_twin'], '.3f')} "
            f"| {fmt(r['paired_ratio_vs_raw_diffrax_twin'], '.3f')} "
            f"| {fmt(r['ratio_torchdiffeq_over_jaxdyn_joint'], '.2f')} "
            f"| {fmt(r['compile_s'], '.1f')} | {r['solver_steps']} |"
        )
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> dict:
    """jaxdyn within 1.05x of its raw-Diffrax twin; jaxdyn joint 2x faster than torchdiffeq."""
    by_name = {r["contender"]: r for r in rows}
    targets = {}
    for batch in ("vmap", "joint"):
        row = by_name[f"jaxdyn {batch}"]
        ratio, paired = row["ratio_vs_raw_diffrax_twin"], row["paired_ratio_vs_raw_diffrax_twin"]
        targets[f"jaxdyn {batch} <= 1.05x raw diffrax"] = {
            "ratio": ratio,
            "paired_ratio": paired,
            "met": ratio <= 1.05,
        }
    if "torchdiffeq odeint" in by_name:
        speedup = min(
            by_name[n]["ratio_torchdiffeq_over_jaxdyn_joint"]
            for n in ("torchdiffeq odeint", "torchdiffeq odeint_adjoint")
        )
        targets["jaxdyn joint >= 2x faster than torchdiffeq"] = {
            "ratio": speedup,
            "met": speedup >= 2.0,
        }
    for name, result in targets.items():
        paired = f" (paired {result['paired_ratio']:.3f})" if "paired_ratio" in result else ""
        print(f"target {name}: {result['ratio']:.3f}{paired} -> {verdict(result['met'])}")
    return targets


def jax_contenders(field: MLPField, y0, target) -> list[dict]:
    """jaxdyn and raw Diffrax, each with a batch vmapped over solves and solved jointly."""
    ts = jnp.array([T0, T1], dtype=jnp.float32)
    contenders = []
    for batch in ("vmap", "joint"):
        model = NeuralODE(field, solver="dopri5", rtol=RTOL, atol=ATOL, batch=batch)
        raw = RawODE(field, joint=batch == "joint")
        contenders.append(
            jax_step_contender(
                f"jaxdyn {batch}",
                model,
                jaxdyn_loss,
                y0,
                target,
                lambda m=model: steps_summary(
                    eqx.filter_jit(lambda m, y: m.solve(ts, y).stats.num_steps)(m, y0)
                ),
                lr=LR,
            )
        )
        contenders.append(
            jax_step_contender(
                f"diffrax {batch}",
                raw,
                raw_loss,
                y0,
                target,
                lambda m=raw: steps_summary(
                    eqx.filter_jit(lambda m, y: m.solution(y).stats["num_steps"])(m, y0)
                ),
                lr=LR,
            )
        )
    return contenders


def workload(args) -> dict:
    return {
        "field": f"MLP {DIM}-{WIDTH}-{WIDTH}-{DIM} tanh",
        "batch": args.batch,
        "t": [T0, T1],
        "solver": "dopri5",
        "rtol": RTOL,
        "atol": ATOL,
        "optimizer": f"adam lr={LR}",
        "dtype": "float32",
        "loss": "mean((y(1) - y0[:, ::-1])**2)",
    }


def main() -> None:
    args = parse_step_args(__doc__.splitlines()[0], OUT)
    key = jax.random.key(args.seed)
    field_key, data_key = jax.random.split(key)
    field = MLPField(dim=DIM, width=WIDTH, depth=DEPTH, activation="tanh", key=field_key)
    y0 = jax.random.normal(data_key, (args.batch, DIM), dtype=jnp.float32)
    target = y0[:, ::-1]
    assert y0.dtype == jnp.float32, "run without jax_enable_x64: the benchmark is float32"

    contenders = jax_contenders(field, y0, target)
    torch_list, note = torch_contenders(
        field, np.asarray(y0), np.asarray(target), args.torch_threads, args.device
    )
    contenders += torch_list
    if note:
        print(note)

    elapsed = time_step_contenders(contenders, args)
    rows = summarise(contenders)
    table = markdown(rows)
    print_table(table)
    targets = check_targets(rows)

    record = {
        **record_header("neural_ode_step", "torch", "torchdiffeq"),
        "workload": workload(args),
        **torch_record(torch_list, args),
        "solver_steps_note": (
            "JAX: diffrax num_steps (accepted + rejected) of the forward solve; torch: "
            "calls of the field (forward solve, plus the adjoint solve for odeint_adjoint); "
            "Dopri5 costs 2 calls to pick the first step and 6 per step"
        ),
        "reps": args.reps,
        "warmup": args.warmup,
        "quick": args.quick,
        "timing_wall_s": elapsed,
        "note": note,
        "results": rows,
        "targets": targets,
        "table_markdown": table,
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()

"""Data-parallel `fit` against the number of devices: strong and weak scaling (issue 13, §3).

What is measured: training steps per second of `jaxdyn.train.fit(..., mesh=...)` on a
one-dimensional `data` mesh over the first d devices, d = 1, 2, 4, … up to the devices there are.

- workloads: `mlp`, an MLP 2-256-256-2 (tanh) regressing `sin` of 2-d standard normal inputs
  (n = 8,192 samples); `ode`, a neural ODE (`MLPField` 2-64-64-2 tanh, RK4, 10 fixed steps on
  [0, 1]) learning a quarter turn of the plane; Adam 1e-3, float32, `parallel="compiler"`.
- strong scaling: the global batch is fixed (`--batch`, default 1,024) and split over d devices;
  weak scaling: every device gets `--batch / 8` samples (global batch `d · batch / 8`).
- each call of `fit` runs `--steps` steps (default 50) in one chunk; all contenders are compiled
  first, then timed interleaved in rounds (`time_round_robin`), so that a shared machine's
  noise falls on all alike. Reported: steps/s (median), and speed-up (strong) or efficiency
  (weak: steps/s at d over steps/s at 1) against d = 1.

Devices: on a CPU backend, `--host-devices N` (default 8) splits the host into N XLA devices
(`--xla_force_host_platform_device_count`): they share the machine's cores, so the numbers show
the cost of partitioning (collectives, per-device dispatch) rather than a speed-up; on an
accelerator the real devices are used. The JSON record names JAX's backend and devices.

Run: `python benchmarks/scaling.py [--reps 10] [--steps 50] [--quick]`. Writes
`benchmarks/out/scaling.json`.
"""

# ruff: noqa: E402  (XLA_FLAGS must be set before JAX is imported: the imports follow it)
import argparse
import os
import sys
from pathlib import Path


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument("--steps", type=int, default=50, help="training steps per call")
    parser.add_argument("--batch", type=int, default=1024, help="global batch (strong scaling)")
    parser.add_argument("--host-devices", type=int, default=8, help="XLA devices on a CPU host")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 reps, 5 steps")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out/scaling.json")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.steps, args.warmup = 2, 5, 0
    if args.batch % 8:
        parser.error(f"--batch must be a multiple of 8, got {args.batch}")
    return args


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):  # read once, when the backend starts: before JAX is imported
    flag = f"--xla_force_host_platform_device_count={ARGS.host_devices}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import fmt, print_table, record_header, spread, time_round_robin, write_record

from jaxdyn.models import MLPField, NeuralODE
from jaxdyn.train import fit

TS = jnp.asarray([0.0, 1.0])
QUARTER_TURN = jnp.asarray([-1.0, 1.0])


def _mlp_loss(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _ode_loss(model, batch, key):
    return jnp.mean((model(TS, batch)[:, -1] - batch[:, ::-1] * QUARTER_TURN) ** 2)


def workloads() -> dict:
    """`name -> (model, loss, data)` of the module docstring."""
    x = jax.random.normal(jax.random.key(0), (8192, 2))
    mlp = eqx.nn.MLP(2, 2, 256, 2, activation=jnp.tanh, key=jax.random.key(1))
    field = MLPField(dim=2, width=64, depth=2, key=jax.random.key(2))
    ode = NeuralODE(field, solver="rk4", dt0=0.1)
    return {"mlp": (mlp, _mlp_loss, (x, jnp.sin(x))), "ode": (ode, _ode_loss, x)}


def device_counts() -> list[int]:
    n = len(jax.devices())
    return [d for d in (1, 2, 4, 8, 16, 32, 64) if d <= n]


def contender(name, d, batch, workload, optimizer, args) -> dict:
    """A call of `fit` for `args.steps` steps on a mesh of the first `d` devices."""
    model, loss, data = workload
    mesh = jax.make_mesh((d,), ("data",), devices=jax.devices()[:d])

    def run():
        result = fit(loss, model, data, optimizer, steps=args.steps, batch_size=batch,
                     chunk=args.steps, key=jax.random.key(args.seed), mesh=mesh,
                     progress=False)  # fmt: skip
        jax.block_until_ready(result.losses)

    run()  # compile before timing
    return {"name": name, "devices": d, "batch": batch, "run": run}


def measure(args) -> list[dict]:
    optimizer = optax.adam(1e-3)  # one object: fit reuses its compiled chunk across calls
    contenders = []
    for wname, workload in workloads().items():
        for d in device_counts():
            for scaling, batch in (("strong", args.batch), ("weak", d * args.batch // 8)):
                print(f"compiling {wname} {scaling} d={d} batch={batch} ...", flush=True)
                contenders.append(contender((wname, scaling), d, batch, workload, optimizer, args))
    time_round_robin(contenders, args.reps, args.warmup, args.seed)
    rows = []
    for c in contenders:
        stats = spread(args.steps / np.asarray(c["times"]), "steps_per_s")
        rows.append({"workload": c["name"][0], "scaling": c["name"][1], "devices": c["devices"],
                     "global_batch": c["batch"], **stats})  # fmt: skip
    for row in rows:  # speed-up (strong) or efficiency (weak) against one device
        base = next(r for r in rows if r["workload"] == row["workload"]
                    and r["scaling"] == row["scaling"] and r["devices"] == 1)  # fmt: skip
        row["vs_one_device"] = row["median_steps_per_s"] / base["median_steps_per_s"]
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| workload | scaling | devices | global batch | steps/s (median) | "
             "q25–q75 | vs 1 device |", "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['scaling']} | {r['devices']} | {r['global_batch']} | "
            f"{fmt(r['median_steps_per_s'], '.1f')} | {fmt(r['q25_steps_per_s'], '.1f')}–"
            f"{fmt(r['q75_steps_per_s'], '.1f')} | {fmt(r['vs_one_device'], '.2f')}× |"
        )
    return "\n".join(lines)


def main(args) -> None:
    backend = jax.default_backend()
    print(f"JAX backend {backend}: {len(jax.devices())} devices ({jax.devices()[0].device_kind})")
    rows = measure(args)
    print_table(table(rows))
    record = record_header("scaling", "jax", "jaxlib", "equinox", "optax")
    record.update(
        backend=backend,
        devices=[str(d) for d in jax.devices()],
        forced_host_devices=backend == "cpu",
        steps=args.steps,
        reps=args.reps,
        rows=rows,
    )
    write_record(args.out, record)


if __name__ == "__main__":
    sys.exit(main(ARGS))

"""Time flow-matching training and sampling on the 2D checkerboard: jaxdyn against torchcfm.

What is measured, on the workload

- data: `jaxdyn.data.checkerboard` (uniform on the dark squares of [-4, 4]², a fresh
  batch of 256 every step; torch draws the same law with the same construction), base
  N(0, I₂);
- velocity field: torchcfm's example MLP, `[x, t]` (3 inputs) → 256 → 256 → 256 → 2 with SELU
  (`jaxdyn.models.MLPField(dim=2, width=256, depth=3, activation=jax.nn.selu, time=True)`; the
  torch model is
  `torchcfm.models.models.MLP(2, w=256, time_varying=True)` with a copy of its weights), float32;
- loss: conditional flow matching with σ = 0 (Lipman et al. 2023; Tong et al. 2023),
  `mean_i |v(t_i, x_t) − (x1_i − x0_i)|²`, `x_t = (1 − t) x0 + t x1`, `t ~ U[0, 1]`; Adam, lr 1e-3.

Three groups of contenders, each timed round-robin on its own:

1. **training throughput** (steps/s), `--train-steps` consecutive steps per timed call (draw
   the batch, loss, gradient, Adam update; training continues from call to call):
   - `jaxdyn CFM scan`: `jaxdyn.train.make_step` on `jaxdyn.generative.flow_matching_loss`
     inside one jitted `lax.scan` over the steps (how `jaxdyn.train.fit` runs them; the
     overhead of `fit` itself over a bare scan is measured by `benchmarks/fit_overhead.py`);
   - `jaxdyn CFM jit-step`: the same step jitted alone and called from a Python loop (one
     dispatch per step, as a hand-written loop would);
   - `torchcfm CFM`: `ConditionalFlowMatcher(sigma=0)` + the torch MLP + `torch.optim.Adam`
     in a Python loop, as torchcfm's 2D examples train.
2. **OT-CFM training throughput**, `--ot-steps` steps per call, the pairs re-drawn from a
   minibatch OT plan before the loss:
   - `jaxdyn OT-CFM scan`: `jaxdyn.generative.ot_coupling` (ott-jax **Sinkhorn**, ε = 0.05 ×
     mean cost, threshold 1e-3, inside the jit), otherwise as `jaxdyn CFM scan`;
   - `jaxdyn OT-CFM scan, plan + choice` (a diagnostic, not jaxdyn's API): the same
     `ot_plan`, with the pairs drawn by `jax.random.choice(p=plan)` (inverse CDF, O(n m))
     instead of `ot_coupling`'s `jax.random.categorical(logits, shape=(n,))`, which draws
     n × n m Gumbel variables (16.8 M for n = m = 256);
   - `torchcfm OT-CFM`: `ExactOptimalTransportConditionalFlowMatcher(sigma=0)` (POT's **exact**
     EMD on the host, one thread, torchcfm's default). The couplings are not the same
     algorithm: Sinkhorn's plan is blurred by ε, EMD's is the exact minibatch plan; the mean
     squared distance of the drawn pairs is printed for each (and for independent pairs).
3. **sampling throughput** (samples/s at a fixed number of field evaluations, NFE = `--nfe`):
   `--samples` draws of N(0, I₂) carried from t = 0 to 1 by the transport ODE of the
   (untrained) field, without gradients:
   - `jaxdyn Euler` / `jaxdyn midpoint`: `jaxdyn.generative.sample_ode(field, x0,
     solver="euler" | "midpoint", dt0=1/steps, rtol=None, atol=None, batch="joint")` under
     `eqx.filter_jit` (fixed steps: NFE steps of Euler, NFE/2 of the midpoint rule; `rtol`
     and `atol` must be `None` for fixed steps);
   - `torchdiffeq Euler` / `torchdiffeq midpoint`: `torchdiffeq.odeint(field, x0, [0, 1],
     method="euler" | "midpoint", options={"step_size": 1/steps})` under `torch.no_grad()`
     (torchcfm's examples sample with torchdiffeq's `odeint` or torchdyn's `NeuralODE`, both
     loops over the same fixed-step update).

How: every JAX contender is one `eqx.filter_jit` function; its first call is reported as the
compile time. After `--warmup` untimed calls (training groups; the first call is the only
warm-up of the sampling group), the contenders of a group are timed round-robin (one call of
each per round, shuffled), so that noise on the shared machine falls on all alike. Reported:
median, interquartile range and min-max of the time per call, the throughput at the median,
and the ratio of the median to a reference contender's (jaxdyn's for each torch contender)
with the median of the per-round ratios (paired, less sensitive to drifting load).

Threads and devices: XLA's CPU client uses every core the process may run on; torch runs with
`--torch-threads` (default: all cores, to match). For one core each, pin the process:
`taskset -c 0 python benchmarks/generative.py --torch-threads 1`. The affinity and
`XLA_FLAGS` are recorded. torch's models and data are on `--device` (default: cuda when torch
sees one, else cpu; float32 as on JAX's side; torchcfm's exact EMD stays on the host, as it
does in torchcfm); on CUDA each timed torch call ends with `torch.cuda.synchronize()`, as each
JAX call ends with `block_until_ready`. The record names both sides' devices.

Sanity checks (always, before timing; asserted): the torch MLP returns the JAX MLP's values;
at the same `(x0, x1, t)` (the `t` that `flow_matching_loss` draws from its key) torchcfm's
loss equals jaxdyn's; the fixed-step samplers of both libraries give the same samples from the
same `x0` (float32 rounding) with the same number of field evaluations.

Run: `python benchmarks/generative.py [--train-reps 10] [--sample-reps 3] [--device cpu|cuda]
[--quick]`. Writes `benchmarks/out/generative.json`.
"""

import argparse
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    add_torch_and_out_arguments,
    fmt,
    print_table,
    record_header,
    resolve_torch_device,
    spread,
    time_call,
    time_round_robin,
    torch_record,
    torch_synchronised,
    write_record,
)

from jaxdyn.data import checkerboard
from jaxdyn.generative import flow_matching_loss, ot_coupling, ot_plan, sample_ode
from jaxdyn.models import MLPField
from jaxdyn.train import make_step

OUT = Path(__file__).resolve().parent / "out" / "generative.json"
DIM, WIDTH, DEPTH = 2, 256, 3
LR = 1e-3
OT_EPSILON = 0.05  # ot_coupling's default: entropic regularisation relative to the mean cost
FIELD_RTOL = 1e-5  # float32 MLP of width 256: different matmul kernels, same weights
LOSS_RTOL = 1e-5  # the same float32 sums over 256 pairs
# Same update rule, same weights, float32 over NFE steps of |v| ~ 1: rounding of the matmuls
# accumulates to ~1e-5 per unit; 1e-3 absolute on samples of scale ~1 leaves a wide margin
# and still fails at once for a wrong grid (one step more or less moves samples by ~1e-2).
SAMPLE_ATOL = 1e-3


# --------------------------------------------------------------------------- JAX side


def make_field(key) -> MLPField:
    return MLPField(dim=DIM, width=WIDTH, depth=DEPTH, activation=jax.nn.selu, time=True, key=key)


def plan_choice_coupling(key, x0, x1):
    """`ot_coupling`'s pairs drawn by inverse CDF (`jax.random.choice` with `p`, O(n m)) from
    the same `ot_plan`, instead of `jax.random.categorical(..., shape=(n,))`, which draws
    `n × n m` Gumbel variables (Gumbel-max): a diagnostic, not jaxdyn's API."""
    plan, _ = ot_plan(x0, x1, epsilon=OT_EPSILON)
    n, m = plan.shape
    flat = jax.random.choice(key, n * m, shape=(n,), p=plan.reshape(-1))
    return x0[flat // m], x1[flat % m]


COUPLINGS = {
    "independent": None,
    "ot_coupling": lambda key, x0, x1: ot_coupling(x0, x1, key=key, epsilon=OT_EPSILON),
    "plan_choice": plan_choice_coupling,
}


def cfm_loss(model: MLPField, batch_size: int, key, coupling: str):
    """Draw a checkerboard batch and base noise, optionally re-pair them along the minibatch OT
    plan, and return the mean CFM loss."""
    k_data, k_base, k_ot, k_loss = jax.random.split(key, 4)
    x1 = checkerboard(batch_size, key=k_data)
    x0 = jax.random.normal(k_base, x1.shape, dtype=x1.dtype)
    if COUPLINGS[coupling] is not None:
        x0, x1 = COUPLINGS[coupling](k_ot, x0, x1)
    return jnp.mean(flow_matching_loss(model, x0, x1, key=k_loss))


def jax_training(name, part, model, batch_size, steps, key, *, coupling: str, scan: bool):
    """A contender running `steps` training steps per call (state carried between calls)."""
    optimizer = optax.adam(LR)

    def loss_fn(model, batch, key):  # the batch is drawn inside from the key
        return cfm_loss(model, batch_size, key, coupling)

    step = make_step(loss_fn, optimizer)

    @eqx.filter_jit
    def run_scan(model, opt_state, key):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def body(carry, k):
            params, opt_state = carry
            model, opt_state, loss, _ = step(eqx.combine(params, static), opt_state, None, k)
            return (eqx.filter(model, eqx.is_inexact_array), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            body, (params, opt_state), jax.random.split(key, steps)
        )
        return eqx.combine(params, static), opt_state, losses

    jit_step = eqx.filter_jit(lambda m, s, k: step(m, s, None, k)[:3])
    state = {"model": model, "opt": optimizer.init(eqx.filter(model, eqx.is_inexact_array))}
    calls = [0]

    def run():
        calls[0] += 1
        key_ = jax.random.fold_in(key, calls[0])
        if scan:
            state["model"], state["opt"], losses = run_scan(state["model"], state["opt"], key_)
        else:
            for k in jax.random.split(key_, steps):
                state["model"], state["opt"], loss = jit_step(state["model"], state["opt"], k)
            losses = loss
        jax.block_until_ready((state["model"], losses))
        state["last_loss"] = float(np.asarray(losses).reshape(-1)[-1])

    compile_s = time_call(run)
    return {
        "name": name,
        "part": part,
        "run": run,
        "state": state,
        "compile_s": compile_s,
        "work": steps,
    }


def jax_sampling(name, model, x0, solver: str, nfe: int):
    stages = {"euler": 1, "midpoint": 2}[solver]
    dt0 = stages / nfe
    sample = eqx.filter_jit(
        lambda m, x: sample_ode(m, x, solver=solver, dt0=dt0, rtol=None, atol=None, batch="joint")
    )
    out = {}

    def run():
        result = jax.block_until_ready(sample(model, x0))
        out["x"], out["stats"] = result.value, result.stats

    compile_s = time_call(run)
    return {
        "name": name,
        "part": "sample",
        "solver": solver,
        "run": run,
        "out": out,
        "samples": lambda: np.asarray(out["x"]),
        "nfe": lambda: int(out["stats"].num_fevals),
        "compile_s": compile_s,
        "work": x0.shape[0],
    }


# --------------------------------------------------------------------------- torch side


def torch_checkerboard(torch, n: int, device: str):
    """`jaxdyn.data.checkerboard`'s construction with torch's generator, on `device`."""
    x1 = torch.rand(n, device=device) * 4.0 - 2.0
    x2 = torch.rand(n, device=device) - 2.0 * torch.randint(0, 2, (n,), device=device).float()
    x2 = x2 + torch.floor(x1) % 2
    return 2.0 * torch.stack([x1, x2], dim=1)


def torch_net(field: MLPField, device: str):
    """torchcfm's example MLP with `field`'s weights (eqx and torch both store (out, in)), on
    `device`."""
    import torch
    from torchcfm.models.models import MLP

    net = MLP(DIM, w=WIDTH, time_varying=True)
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(field.mlp.layers), "torchcfm's MLP changed shape"
    with torch.no_grad():
        for layer, linear in zip(linears, field.mlp.layers, strict=True):
            layer.weight.copy_(torch.from_numpy(np.array(linear.weight)))
            layer.bias.copy_(torch.from_numpy(np.array(linear.bias)))
    return net.to(device)


def torch_training(
    torch, field, name, part, matcher, batch_size: int, steps: int, device: str
) -> dict:
    """torchcfm training on `device`: `steps` steps per call of `matcher` + the torch MLP +
    Adam."""
    net = torch_net(field, device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    state = {}

    def run():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            x1 = torch_checkerboard(torch, batch_size, device)
            x0 = torch.randn_like(x1)
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            vt = net(torch.cat([xt, t[:, None]], dim=-1))
            loss = torch.mean(torch.sum((vt - ut) ** 2, dim=-1))
            loss.backward()
            opt.step()
        state["last_loss"] = float(loss.item())

    run = torch_synchronised(torch, device, run)
    first_call_s = time_call(run)
    return {
        "name": name,
        "part": part,
        "run": run,
        "state": state,
        "first_call_s": first_call_s,
        "work": steps,
    }


def torch_sampling(torch, torchdiffeq, field, x0_t, name, method: str, nfe: int) -> dict:
    """torchdiffeq's fixed-step `odeint` of the torch MLP under `torch.no_grad()`, on
    `x0_t`'s device."""

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_net(field, x0_t.device)
            self.nfe = 0

        def forward(self, t, x):
            self.nfe += 1
            return self.net(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))

    span = torch.tensor([0.0, 1.0], device=x0_t.device)
    stages = {"euler": 1, "midpoint": 2}[method]
    f = Field()
    out = {}

    def run():
        f.nfe = 0
        with torch.no_grad():
            out["x"] = torchdiffeq.odeint(
                f, x0_t, span, method=method, options={"step_size": stages / nfe}
            )[-1]
        out["nfe"] = f.nfe

    run = torch_synchronised(torch, x0_t.device.type, run)
    first_call_s = time_call(run)
    return {
        "name": name,
        "part": "sample",
        "solver": method,
        "run": run,
        "samples": lambda: out["x"].cpu().numpy(),
        "nfe": lambda: out["nfe"],
        "first_call_s": first_call_s,
        "work": x0_t.shape[0],
    }


def torch_contenders(field, x0_sample, batch_size, steps, ot_steps, nfe, seed, threads, device):
    """torchcfm training and torchdiffeq sampling contenders on `device`, and what the sanity
    check needs of torch; ([], note) if unavailable."""
    try:
        import torch
        import torchdiffeq
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )
    except ImportError as error:
        return [], f"torch/torchcfm/torchdiffeq not available ({error}); torch contenders skipped"

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (torchcfm draws the OT pairs with the legacy np.random)
    x0_t = torch.from_numpy(np.array(x0_sample)).to(device)
    sanity = {"torch": torch, "device": device, "net": torch_net(field, device)}
    sanity["matcher"] = ConditionalFlowMatcher(0.0)
    sanity["ot_matcher"] = ExactOptimalTransportConditionalFlowMatcher(0.0)
    # The matchers are made as the trainers are, in this order (the torch RNG stream).
    cfm, ot_cfm = ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher
    train = (torch, field)
    return [
        torch_training(*train, "torchcfm CFM", "train", cfm(0.0), batch_size, steps, device),
        torch_training(
            *train, "torchcfm OT-CFM", "train OT", ot_cfm(0.0), batch_size, ot_steps, device
        ),
        torch_sampling(torch, torchdiffeq, field, x0_t, "torchdiffeq Euler", "euler", nfe),
        torch_sampling(torch, torchdiffeq, field, x0_t, "torchdiffeq midpoint", "midpoint", nfe),
    ], sanity


# --------------------------------------------------------------------------- checks


def flow_matching_times(key, batch_size: int):
    """The `t` that `flow_matching_loss` draws from `key` for a batch of `batch_size`: with
    `x0 = x1 = 0` and the field `v(t, x) = (t, 0)` the per-sample loss is `t²`."""
    zeros = jnp.zeros((batch_size, DIM), dtype=jnp.float32)
    probe = lambda t, x, args: jnp.stack([t, jnp.zeros_like(t)])  # noqa: E731
    return jnp.sqrt(flow_matching_loss(probe, zeros, zeros, key=key))


def sanity_check(field: MLPField, torch_side, contenders, batch_size: int, seed: int) -> dict:
    """Asserted: equal fields, equal CFM losses at equal inputs, equal fixed-step samples and the
    stated NFE. Reported: the mean squared pair distance of each coupling."""
    record = {}
    key = jax.random.key(seed + 7)
    k_data, k_base, k_loss, k_ot = jax.random.split(key, 4)
    x1 = checkerboard(batch_size, key=k_data)
    x0 = jax.random.normal(k_base, x1.shape, dtype=x1.dtype)
    t = flow_matching_times(k_loss, batch_size)
    jax_loss = float(jnp.mean(flow_matching_loss(field, x0, x1, key=k_loss)))
    pair_cost = {"independent": float(jnp.mean(jnp.sum((x1 - x0) ** 2, axis=1)))}
    for name, coupling in (("jaxdyn ot_coupling", "ot_coupling"), ("plan + choice", "plan_choice")):
        ot0, ot1 = jax.jit(COUPLINGS[coupling])(k_ot, x0, x1)
        pair_cost[name] = float(jnp.mean(jnp.sum((ot1 - ot0) ** 2, axis=1)))
    for name, c in {x["name"]: x for x in contenders if x["part"] == "sample"}.items():
        record.setdefault("nfe", {})[name] = c["nfe"]()
    if torch_side is not None:
        torch, device, net = torch_side["torch"], torch_side["device"], torch_side["net"]
        x0_t, x1_t, t_t = (torch.from_numpy(np.array(a)).to(device) for a in (x0, x1, t))
        inputs = torch.cat([x1_t, t_t[:, None]], dim=-1)
        with torch.no_grad():
            torch_v = net(inputs).cpu().numpy()
        jax_v = np.asarray(jax.vmap(field)(t, x1))
        field_err = float(np.max(np.abs(torch_v - jax_v)) / np.max(np.abs(jax_v)))
        with torch.no_grad():
            tt, xt, ut = torch_side["matcher"].sample_location_and_conditional_flow(
                x0_t, x1_t, t=t_t
            )
            vt = net(torch.cat([xt, tt[:, None]], dim=-1))
            torch_loss = float(torch.mean(torch.sum((vt - ut) ** 2, dim=-1)))
            e0, e1 = torch_side["ot_matcher"].ot_sampler.sample_plan(x0_t, x1_t)
        pair_cost["torchcfm exact EMD"] = float(torch.mean(torch.sum((e1 - e0) ** 2, dim=-1)))
        loss_err = abs(torch_loss - jax_loss) / abs(jax_loss)
        record.update(
            field_max_rel_diff=field_err,
            loss_jaxdyn=jax_loss,
            loss_torchcfm=torch_loss,
            loss_rel_diff=loss_err,
        )
        print(f"field: max relative difference {field_err:.1e} (tolerance {FIELD_RTOL})")
        print(
            f"CFM loss at the same (x0, x1, t): jaxdyn {jax_loss:.6f}, torchcfm {torch_loss:.6f} "
            f"(relative difference {loss_err:.1e}, tolerance {LOSS_RTOL})"
        )
        assert field_err <= FIELD_RTOL, "the torch MLP differs from the JAX MLP"
        assert loss_err <= LOSS_RTOL, "torchcfm's CFM loss differs from jaxdyn's"
        samplers = {c["name"]: c for c in contenders if c["part"] == "sample"}
        record["sample_max_abs_diff"] = {}
        for solver in ("euler", "midpoint"):
            ours = samplers[f"jaxdyn {_label(solver)}"]
            theirs = samplers[f"torchdiffeq {_label(solver)}"]
            diff = float(np.max(np.abs(ours["samples"]() - theirs["samples"]())))
            record["sample_max_abs_diff"][solver] = diff
            print(f"{solver} samples: max |jaxdyn - torchdiffeq| {diff:.1e} (atol {SAMPLE_ATOL})")
            assert diff <= SAMPLE_ATOL, f"{solver}: jaxdyn and torchdiffeq samples differ"
    for name, value in record["nfe"].items():
        print(f"NFE: {name:22s} {value}")
    nfes = set(record["nfe"].values())
    assert len(nfes) == 1, f"the samplers made different numbers of evaluations: {record['nfe']}"
    record["pair_mean_squared_distance"] = pair_cost
    for name, value in pair_cost.items():
        print(f"pairs of {batch_size}: mean |x1 - x0|² {value:.3f} ({name})")
    return record


def _label(solver: str) -> str:
    return {"euler": "Euler", "midpoint": "midpoint"}[solver]


# --------------------------------------------------------------------------- timing


REFERENCES = {  # each contender's time is also given relative to this one's (same part)
    "jaxdyn CFM jit-step": "jaxdyn CFM scan",
    "torchcfm CFM": "jaxdyn CFM scan",
    "jaxdyn OT-CFM scan, plan + choice": "jaxdyn OT-CFM scan",
    "torchcfm OT-CFM": "jaxdyn OT-CFM scan",
    "torchdiffeq Euler": "jaxdyn Euler",
    "torchdiffeq midpoint": "jaxdyn midpoint",
}
UNITS = {"train": "steps/s", "train OT": "steps/s", "sample": "samples/s"}


def summarise(contenders) -> list[dict]:
    times = {c["name"]: np.asarray(c["times"]) for c in contenders}
    rows = []
    for c in contenders:
        t = times[c["name"]]
        median = float(np.median(t))
        reference = REFERENCES.get(c["name"])
        ratio = paired = None
        if reference in times:
            ratio = median / float(np.median(times[reference]))
            paired = float(np.median(t / times[reference]))
        rows.append(
            {
                "contender": c["name"],
                "part": c["part"],
                **spread(t, "s"),
                "work_per_call": c["work"],
                "throughput": c["work"] / median,
                "throughput_unit": UNITS[c["part"]],
                "reference": reference,
                "time_over_reference": ratio,
                "paired_time_over_reference": paired,
                "compile_s": c.get("compile_s"),
                "first_call_s": c.get("first_call_s"),
                "last_loss": c.get("state", {}).get("last_loss"),
                "times_s": [float(x) for x in t],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| contender | work per call | median s per call (IQR) | throughput "
        "| time / reference (paired) | reference | compile s |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        unit = "steps" if r["part"].startswith("train") else "samples"
        lines.append(
            f"| {r['contender']} | {r['work_per_call']} {unit} "
            f"| {r['median_s']:.3f} ({r['q25_s']:.3f}–{r['q75_s']:.3f}) "
            f"| {r['throughput']:,.1f} {r['throughput_unit']} "
            f"| {fmt(r['time_over_reference'], '.2f')} "
            f"({fmt(r['paired_time_over_reference'], '.2f')}) "
            f"| {r['reference'] or '–'} | {fmt(r['compile_s'], '.1f')} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-reps", type=int, default=10, help="timed training calls")
    parser.add_argument("--train-steps", type=int, default=100, help="training steps per call")
    parser.add_argument("--ot-reps", type=int, default=5, help="timed OT-CFM training calls")
    parser.add_argument("--ot-steps", type=int, default=5, help="OT-CFM steps per call")
    parser.add_argument("--sample-reps", type=int, default=3, help="timed sampling calls")
    parser.add_argument("--batch", type=int, default=256, help="training batch size")
    parser.add_argument("--samples", type=int, default=5_000, help="samples per sampling call")
    parser.add_argument("--nfe", type=int, default=100, help="field evaluations per sample")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 reps, 5 steps (OT: 1), 500 samples, NFE 10, no warm-up",
    )
    add_torch_and_out_arguments(parser, OUT)
    args = parser.parse_args()
    resolve_torch_device(parser, args)
    if args.quick:
        args.train_reps = args.ot_reps = args.sample_reps = 2
        args.train_steps, args.ot_steps, args.samples, args.nfe, args.warmup = 5, 1, 500, 10, 0
    if args.nfe % 2:
        parser.error(
            f"--nfe must be even (the midpoint rule evaluates twice a step); got {args.nfe}"
        )
    return args


def jax_contenders(args, field: MLPField, x0, train_key) -> list[dict]:
    """The JAX training contenders (CFM and OT-CFM, scan and jit-step) and samplers."""
    contenders = []
    for name, part, coupling, scan in (
        ("jaxdyn CFM scan", "train", "independent", True),
        ("jaxdyn CFM jit-step", "train", "independent", False),
        ("jaxdyn OT-CFM scan", "train OT", "ot_coupling", True),
        ("jaxdyn OT-CFM scan, plan + choice", "train OT", "plan_choice", True),
    ):
        steps = args.train_steps if part == "train" else args.ot_steps
        contenders.append(
            jax_training(
                name, part, field, args.batch, steps, train_key, coupling=coupling, scan=scan
            )
        )
    return contenders + [
        jax_sampling("jaxdyn Euler", field, x0, "euler", args.nfe),
        jax_sampling("jaxdyn midpoint", field, x0, "midpoint", args.nfe),
    ]


def time_parts(contenders: list[dict], args) -> dict[str, float]:
    """Time each part's contenders round-robin among themselves; the wall time of each part."""
    parts = {}
    for part, reps in (
        ("train", args.train_reps),
        ("train OT", args.ot_reps),
        ("sample", args.sample_reps),
    ):
        group = [c for c in contenders if c["part"] == part]
        print(f"timing {len(group)} '{part}' contenders, {reps} round-robin rounds ...")
        warmup = 0 if part == "sample" else args.warmup  # the first call warmed them up
        parts[part] = time_round_robin(group, reps, warmup, args.seed)
    return parts


def print_ratios(rows: list[dict]) -> None:
    for r in rows:
        if r["reference"] is not None:
            print(
                f"{r['contender']} / {r['reference']}: {r['time_over_reference']:.2f}x the time "
                f"(paired {r['paired_time_over_reference']:.2f}x)"
            )


def workload(args) -> dict:
    return {
        "data": "checkerboard on [-4, 4]^2 (fresh batch each step), base N(0, I2)",
        "field": f"MLP [x, t] {DIM + 1}-{WIDTH}-{WIDTH}-{WIDTH}-{DIM} SELU (torchcfm's MLP)",
        "loss": "CFM, sigma = 0: mean |v(t, x_t) - (x1 - x0)|^2, t ~ U[0, 1]",
        "ot": (
            f"jaxdyn: ott-jax Sinkhorn, epsilon = {OT_EPSILON} x mean cost, threshold 1e-3; "
            "torchcfm: POT exact EMD (1 thread); pairs drawn from the plan with replacement"
        ),
        "optimizer": f"adam lr={LR}",
        "batch": args.batch,
        "train_steps_per_call": args.train_steps,
        "ot_steps_per_call": args.ot_steps,
        "samples_per_call": args.samples,
        "nfe": args.nfe,
        "samplers": "euler (nfe steps), midpoint (nfe / 2 steps), fixed, t in [0, 1]",
        "dtype": "float32",
    }


def main() -> None:
    args = parse_args()
    start_all = time.perf_counter()
    key = jax.random.key(args.seed)
    field_key, train_key, sample_key = jax.random.split(key, 3)
    field = make_field(field_key)
    x0 = jax.random.normal(sample_key, (args.samples, DIM), dtype=jnp.float32)
    assert x0.dtype == jnp.float32, "run without jax_enable_x64: the benchmark is float32"

    contenders = jax_contenders(args, field, x0, train_key)
    torch_list, torch_side = torch_contenders(
        field,
        x0,
        args.batch,
        args.train_steps,
        args.ot_steps,
        args.nfe,
        args.seed,
        args.torch_threads,
        args.device,
    )
    note = torch_side if isinstance(torch_side, str) else None
    if note:
        print(note)
        torch_side = None
    contenders += torch_list

    check = sanity_check(field, torch_side, contenders, args.batch, args.seed)
    parts = time_parts(contenders, args)
    rows = summarise(contenders)
    table = markdown(rows)
    print_table(table)
    print_ratios(rows)
    total = time.perf_counter() - start_all
    print(f"total wall time {total:.0f} s (compilation and checks included)")

    record = {
        **record_header("generative", "torch", "torchcfm", "torchdiffeq", "ott-jax", "pot"),
        "workload": workload(args),
        **torch_record(torch_list, args),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "train_reps": args.train_reps,
        "ot_reps": args.ot_reps,
        "sample_reps": args.sample_reps,
        "warmup": args.warmup,
        "quick": args.quick,
        "timing_wall_s": parts,
        "total_wall_s": total,
        "note": note,
        "sanity_check": check,
        "results": rows,
        "table_markdown": table,
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()

"""Empirical NTK throughput and compiled peak memory: `jaxdyn.learning.empirical_ntk` by each
`method`, against a naive `jax.jacrev` contraction (and neural-tangents where it imports).

What is measured (the same process, CPU unless JAX sees an accelerator), float32, the full kernel
`Θ(x, x')_{ab}` over every output pair (`outputs="pairs"`, `(n, n, out, out)`) of a batch with
itself:

- `mlp`: `eqx.nn.MLP` 64 → 256 → 256 → 10 (ReLU), `n = 64` inputs (83k parameters);
- `conv`: a small conv net on 1 × 8 × 8 images, `Conv2d(1, 16, 3, padding=1)` → ReLU →
  `Conv2d(16, 16, 3, padding=1)` → ReLU → flatten → `Linear(1024, 10)`, `n = 32` (13k
  parameters, most in the read-out).

Contenders, each one `jax.jit`ted function of the model's parameters and the batch:
`empirical_ntk(..., method=m)` for `m` in `NTK_METHODS`, and `naive`: `J = jax.jacrev` of the
batched forward pass, contracted leaf by leaf, `Θ = Σ_leaves J Jᵀ` (`einsum`). Every contender's
kernel is first checked equal to the naive one (relative Frobenius error ≤ 1e-4, float32
sums in different orders). Throughput: kernels per second from interleaved round-robin repeats
(median time). Memory: XLA's compiled `memory_analysis()` of each jitted program — its
temporaries (`temp_size_in_bytes`) and those plus arguments and outputs: what the buffer
assignment reserves, not a measurement of the process (XLA:CPU's `peak_memory_in_bytes` came out
equal to the arguments plus outputs, without the temporaries, so it is recorded but not used).

neural-tangents: tried at import (`--neural-tangents-path` for a `pip install --target` copy);
why it is absent is recorded.

Usage: python benchmarks/ntk.py [--reps 7] [--out ...]
"""

import argparse
import sys
import types
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import print_table, record_header, spread, time_call, time_round_robin, write_record

from jaxdyn.learning import NTK_METHODS, empirical_ntk

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--reps", type=int, default=7)
PARSER.add_argument("--warmup", type=int, default=1)
PARSER.add_argument("--seed", type=int, default=0)
PARSER.add_argument("--neural-tangents-path", type=Path, default=None)
PARSER.add_argument(
    "--out", type=Path, default=Path(__file__).resolve().parent / "out" / "ntk.json"
)


class ConvNet(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 16, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(16, 16, 3, padding=1, key=k2)
        self.head = eqx.nn.Linear(16 * 8 * 8, 10, key=k3)

    def __call__(self, x):
        h = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
        return self.head(h.reshape(-1))


def workloads() -> dict:
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    mlp = eqx.nn.MLP(64, 10, 256, 2, activation=jax.nn.relu, key=k1)
    return {
        "mlp": (mlp, jax.random.normal(k2, (64, 64))),
        "conv": (ConvNet(k3), jax.random.normal(k4, (32, 1, 8, 8))),
    }


def naive_ntk(model, x):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def forward(p):
        return jax.vmap(eqx.combine(p, static))(x)

    jac = jax.jacrev(forward)(params)
    n, out = x.shape[0], forward(params).shape[1]
    blocks = [j.reshape(n, out, -1) for j in jax.tree.leaves(jac)]
    return sum(jnp.einsum("iap,jbp->ijab", j, j) for j in blocks)


def neural_tangents_kernel(path: Path | None):
    """neural-tangents' `empirical_ntk_fn`, or the reason it is unavailable."""
    if path is not None:
        sys.path.insert(0, str(path))
    try:
        # 0.6.5 imports its TensorFlow port at the top level; it is not used here
        sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("stub"))
        import neural_tangents as nt
    except Exception as error:  # any import failure is the finding
        return None, f"{type(error).__name__}: {error}"

    def kernel(model, x, implementation):
        params, static = eqx.partition(model, eqx.is_inexact_array)
        fn = nt.empirical_ntk_fn(
            lambda p, x: jax.vmap(eqx.combine(p, static))(x), trace_axes=(),
            vmap_axes=0, implementation=implementation,
        )  # fmt: skip
        return fn(x, None, params)

    return kernel, None


def memory(fn, *args) -> dict:
    """XLA's buffer assignment of the compiled program: temporaries, and temporaries plus
    arguments plus outputs (`peak_memory_in_bytes` is also kept: on XLA:CPU it came out equal to
    the arguments plus outputs, without the temporaries)."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    total = (stats.temp_size_in_bytes + stats.argument_size_in_bytes
             + stats.output_size_in_bytes - stats.alias_size_in_bytes)  # fmt: skip
    return {
        "temp_mib": stats.temp_size_in_bytes / 2**20,
        "total_mib": total / 2**20,
        "xla_peak_memory_mib": stats.peak_memory_in_bytes / 2**20,
    }


def bench(name: str, model, x, nt_kernel, args) -> tuple[dict, list[str]]:
    params, static = eqx.partition(model, eqx.is_inexact_array)
    contenders = {"naive jacrev": lambda p, x: naive_ntk(eqx.combine(p, static), x)}
    for method in NTK_METHODS:
        contenders[f"empirical_ntk {method}"] = (
            lambda p, x, m=method: empirical_ntk(eqx.combine(p, static), x,
                                                 method=m, outputs="pairs")
        )  # fmt: skip
    if nt_kernel is not None:
        for impl in (1, 2, 3):
            contenders[f"neural-tangents {impl}"] = (
                lambda p, x, i=impl: nt_kernel(eqx.combine(p, static), x, i)
            )  # fmt: skip
    jitted = {k: jax.jit(f) for k, f in contenders.items()}

    def call(f):
        return jax.block_until_ready(f(params, x))

    compile_s = {k: time_call(lambda f=f: call(f)) for k, f in jitted.items()}
    reference = np.asarray(call(jitted["naive jacrev"]))
    for k, f in jitted.items():
        error = np.linalg.norm(np.asarray(call(f)) - reference) / np.linalg.norm(reference)
        assert error <= 1e-4, f"{name} {k}: relative error {error:.2e} against naive"
    timed = [{"name": k, "run": lambda f=f: call(f)} for k, f in jitted.items()]
    time_round_robin(timed, args.reps, args.warmup, args.seed)
    count = sum(leaf.size for leaf in jax.tree.leaves(params))
    record = {"inputs": int(x.shape[0]), "parameters": int(count)}
    naive = np.median(timed[0]["times"])
    rows = []
    for c in timed:
        median = float(np.median(c["times"]))
        mem = memory(contenders[c["name"]], params, x)
        record[c["name"]] = {**spread(c["times"], "s"), "kernels_per_s": 1 / median,
                             "speedup_vs_naive": naive / median,
                             "compile_s": compile_s[c["name"]], **mem}  # fmt: skip
        rows.append(f"| {name} | {c['name']} | {1 / median:.2f} | {naive / median:.2f} | "
                    f"{mem['temp_mib']:.1f} | {mem['total_mib']:.1f} |")  # fmt: skip
    return record, rows


def main() -> None:
    args = PARSER.parse_args()
    nt_kernel, nt_missing = neural_tangents_kernel(args.neural_tangents_path)
    rows, record_rows = [], {}
    for name, (model, x) in workloads().items():
        record_rows[name], new = bench(name, model, x, nt_kernel, args)
        rows += new
    table = "\n".join(
        ["| network | contender | kernels/s | × naive | temp MiB | temp + in + out MiB |",
         "|---|---|---|---|---|---|", *rows]
    )  # fmt: skip
    print_table(table)
    if nt_missing:
        print(f"neural-tangents not compared: {nt_missing}")
    record = {**record_header("ntk"), "reps": args.reps, "workloads": record_rows,
              "neural_tangents": nt_missing or "compared"}  # fmt: skip
    write_record(args.out, record)


if __name__ == "__main__":
    main()

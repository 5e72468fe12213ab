"""Tests run in float64 so gradients can be compared with finite differences.
(x64 is enabled here only, never by the library.)

Compilation dominates the suite's time on CPU (most tests compile a solve and its gradient
once and run it on tiny inputs), so:

- the tests ask XLA for its cheapest backend optimisation: on `tests/test_sde.py` this cut CPU
  time by 25% (4 min 16 s → 3 min 11 s); and for its older CPU fusion emitters (below).
  Results are the same programs compiled with fewer LLVM passes (float rounding may differ in
  the last bits, which no test may depend on); the benchmarks and experiments keep XLA's
  defaults. A flag the user already set in `XLA_FLAGS` wins.
- JAX's persistent compilation cache is not used: over a whole run (2026-12-04) it was hit
  365 times out of 5,382 compilations and saved 15 s of ~7,900 worker seconds, while every
  program compiled for 0.2 s or more was also serialised to disk (tests, CLI subprocesses and
  notebooks rarely compile the same program twice).
"""

import importlib.metadata
import os

_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
# XLA:CPU's older (non-MLIR) fusion emitters compile in ~40% less time than the new ones here
# (a neural ODE gradient and an SDE solve, 3 interleaved repeats: 12.9 → 7.9 s). XLA aborts on
# a flag it does not know, so only for the jaxlib versions it was measured on.
if importlib.metadata.version("jaxlib").startswith("0.10."):
    _FAST_COMPILE += ("--xla_cpu_use_fusion_emitters=false",)
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_flags] + [f for f in _FAST_COMPILE if f.split("=")[0] not in _flags]
).strip()

import jax  # noqa: E402  (XLA reads XLA_FLAGS when it starts)

jax.config.update("jax_enable_x64", True)

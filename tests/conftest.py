"""Tests run in float64 so gradients can be compared with finite differences.
(x64 is enabled here only, never by the library.)

Compilation dominates the suite's time on CPU (most tests compile a solve and its gradient
once and run it on tiny inputs), so:

- the tests ask XLA for its cheapest backend optimisation: on `tests/test_sde.py` this cut CPU
  time by 25% (4 min 16 s → 3 min 11 s). Results are the same programs compiled with fewer
  LLVM passes; the benchmarks and experiments keep XLA's defaults. A flag the user already
  set in `XLA_FLAGS` wins.
- JAX's persistent compilation cache is not used: over a whole run (2026-12-04) it was hit
  365 times out of 5,382 compilations and saved 15 s of ~7,900 worker seconds, while every
  program compiled for 0.2 s or more was also serialised to disk (tests, CLI subprocesses and
  notebooks rarely compile the same program twice).
"""

import os

_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
# Not used: XLA:CPU's older fusion emitters (`--xla_cpu_use_fusion_emitters=false`) compile in
# ~40% less time, but change float32 rounding (tanh): the README's float32 `steady_state` then
# stalls at a residual of 5e-7 against its 1e-8 tolerance (it converges today because the
# residual reaches exactly 0). See docs/testing.md.
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_flags] + [f for f in _FAST_COMPILE if f.split("=")[0] not in _flags]
).strip()

import jax  # noqa: E402  (XLA reads XLA_FLAGS when it starts)

jax.config.update("jax_enable_x64", True)

"""Tests run in float64 so gradients can be compared with finite differences.
(x64 is enabled here only, never by the library.)

Compilation dominates the suite's time on CPU (most tests compile a solve and its gradient
once and run it on tiny inputs), so:

- the tests ask XLA for its cheapest backend optimisation: on `tests/test_sde.py` this cut CPU
  time by 25% (4 min 16 s → 3 min 11 s); and for its older CPU fusion emitters (below).
  Results are the same programs compiled with fewer LLVM passes; the benchmarks and
  experiments keep XLA's defaults. A flag the user already set in `XLA_FLAGS` wins.
- JAX's persistent compilation cache lives in one temporary directory per pytest run, shared by
  the xdist workers, the CLI subprocesses and the notebook kernels (all inherit the environment
  set here, in the controlling process, before they start): a program compiled once (the same
  experiment in-process and in a subprocess, the same model in two tests) is read back, not
  recompiled. The directory is removed when the run ends. A cache the user already configured
  (`JAX_COMPILATION_CACHE_DIR`) wins.
"""

import atexit
import importlib.metadata
import os
import shutil
import tempfile

_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
# XLA:CPU's older (non-MLIR) fusion emitters compile in ~40% less time than the new ones here
# (measured on a neural ODE gradient and an SDE solve, 3 interleaved repeats: 12.9 → 7.9 s).
# XLA aborts on a flag it does not know, so only for the jaxlib versions it was measured on.
if importlib.metadata.version("jaxlib").startswith("0.10."):
    _FAST_COMPILE += ("--xla_cpu_use_fusion_emitters=false",)
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_flags] + [f for f in _FAST_COMPILE if f.split("=")[0] not in _flags]
).strip()

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxdyn-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    # Programs that compile in under 0.2 s (eager single operations) are cheaper to redo.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    _owner = os.getpid()
    atexit.register(lambda: os.getpid() == _owner and shutil.rmtree(_cache, ignore_errors=True))

import jax  # noqa: E402  (XLA reads XLA_FLAGS, and JAX its cache settings, when they start)

jax.config.update("jax_enable_x64", True)

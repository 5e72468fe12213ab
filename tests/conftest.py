"""Tests run in float64 so gradients can be compared with finite differences.
(x64 is enabled here only, never by the library.)"""

import jax

jax.config.update("jax_enable_x64", True)

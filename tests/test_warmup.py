"""The step counter and KL warm-up of `jaxdyn.train.warmup`, through `fit`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn.train import StepCounted, counting_steps, fit, kl_warmup

KEY = jax.random.key(0)


def test_kl_warmup_and_step_counter():
    np.testing.assert_allclose([kl_warmup(s, 4) for s in range(6)], [0.25, 0.5, 0.75, 1, 1, 1])
    assert float(kl_warmup(10, 0)) == 1.0

    def loss(counted, batch, key):  # the weight read from the counter; the counter untrained
        w = kl_warmup(jax.lax.stop_gradient(counted.step), 2)
        return w * jnp.sum((counted.model - batch) ** 2)

    data = jnp.ones((4, 2))
    result = fit(loss, StepCounted(jnp.zeros(2)), data, counting_steps(optax.adamw(0.1)),
                 steps=5, batch_size=None, key=KEY, chunk=2, progress=False)  # fmt: skip
    assert float(result.model.step) == 5.0
    assert float(jnp.sum(result.model.model)) > 0  # the wrapped model was trained
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        kl_warmup(1, -1)

"""Coordinated dropout (`jaxdyn.train.coordinated_dropout`, `gradient_masked`): what it masks
and scales, and that the entries the encoder saw give no reconstruction gradient, alone and
through LangevinFlow's experiment loss (and that loss's KL weight). (x64 is on in conftest.)"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.experiments.langevin_flow import _loss_fn
from jaxdyn.models.seq_vae import LatentOutput
from jaxdyn.train import coordinated_dropout, gradient_masked

KEY = jax.random.key(0)
# one compilation per rate (eagerly, one per operation)
_dropout = jax.jit(coordinated_dropout, static_argnames=("rate", "pass_rate"))


def test_what_coordinated_dropout_masks_and_scales():
    data = jnp.asarray(np.random.default_rng(0).poisson(2.0, (200, 100)) + 1.0)  # no zeros
    inputs, trained = _dropout(data, 0.3, key=KEY, pass_rate=0.0)
    dropped = np.asarray(inputs) == 0
    # Kept entries scaled by 1/(1 − rate), dropped ones zero; trained = dropped exactly.
    np.testing.assert_allclose(np.asarray(inputs)[~dropped], np.asarray(data)[~dropped] / 0.7)
    np.testing.assert_array_equal(np.asarray(trained), dropped)
    n = data.size  # the dropped fraction is Binomial(n, 0.3)/n: within 5 sd of 0.3
    assert abs(dropped.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    # The reference's pass rate (default: = rate): kept entries also train w.p. 0.3.
    inputs, trained = _dropout(data, 0.3, key=KEY)
    dropped, trained = np.asarray(inputs) == 0, np.asarray(trained)
    assert trained[dropped].all()
    kept = ~dropped
    assert abs(trained[kept].mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / kept.sum())
    # Rate 0: the data unchanged, every entry trained.
    inputs, trained = coordinated_dropout(data, 0.0, key=KEY)
    np.testing.assert_array_equal(np.asarray(inputs), np.asarray(data))
    assert np.asarray(trained).all()
    for bad in ({"rate": 1.0}, {"rate": -0.1}, {"rate": 0.3, "pass_rate": 1.5}):
        with pytest.raises(ValueError, match="coordinated_dropout needs"):
            coordinated_dropout(data, key=KEY, **bad)


def test_gradient_masked_keeps_the_value_and_blocks_the_gradient():
    y = jnp.arange(6.0)
    mask = jnp.asarray([True, False, True, False, False, True])

    def loss(theta):
        return jnp.sum(gradient_masked((theta - y) ** 2, mask))

    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.zeros(6))
    assert float(value) == float(jnp.sum(y**2))  # the whole loss is reported
    np.testing.assert_array_equal(np.asarray(grad), np.where(mask, -2.0 * y, 0.0))


class _Copy(eqx.Module):
    """A stand-in VAE whose log-rates read its input (`w · log1p(input)`, held-in columns) plus
    a free table `b` `(bins, neurons)`: the identity map coordinated dropout must not train.
    Its KL is a constant 3 per trial."""

    b: jax.Array
    w: jax.Array

    def __call__(self, spikes, *, key):
        heldin = spikes.shape[1]
        copy = jnp.pad(self.w * jnp.log1p(spikes), ((0, 0), (0, self.b.shape[1] - heldin)))
        return LatentOutput(self.b + copy, spikes, jnp.asarray(3.0))


def test_experiment_loss_gives_no_gradient_for_the_inputs_the_encoder_saw():
    bins, heldin, neurons = 6, 3, 5
    batch = jnp.asarray(np.random.default_rng(1).poisson(1.5, (2, bins, neurons)), float)
    model = _Copy(jnp.zeros((bins, neurons)), jnp.asarray(0.5))
    loss = _loss_fn(heldin, warmup=4, dropout=0.4, kl_weight=0.1)
    (value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(model, 1.0, batch, KEY)
    # The same mask as the loss drew: its key is the second half of the key's split.
    inputs, trained = _dropout(batch[..., :heldin], 0.4, key=jax.random.split(KEY)[1])
    trained = np.concatenate([np.asarray(trained), np.ones((2, bins, neurons - heldin), bool)], -1)
    assert 0 < trained[..., :heldin].mean() < 1  # some seen entries, some not

    def masked_nll(m, where):  # the Poisson NLL per bin and neuron over the entries `where`
        log_rates = jax.vmap(lambda s: m(s, key=KEY).log_rates)(inputs)
        terms = batch * log_rates - jnp.exp(log_rates) - jax.lax.lgamma(batch + 1.0)
        return -jnp.sum(jnp.where(where, terms, 0.0)) / batch.size

    # The value is the whole NLL of the dropped-out input; the gradient that of the trained
    # entries alone, so zero for the bias of a (bin, neuron) that no trial trains.
    np.testing.assert_allclose(float(aux["nll"]), float(jax.jit(masked_nll)(model, True)),
                               rtol=1e-12)  # fmt: skip
    # The KL weight at step 1 of a 4-step warm-up to 0.1 is 0.1 · 2 / 4; the KL per bin and
    # neuron is 3 / (bins · neurons).
    np.testing.assert_allclose(float(aux["beta"]), 0.05, rtol=1e-12)
    np.testing.assert_allclose(float(value), float(aux["nll"]) + 0.05 * 3.0 / (bins * neurons),
                               rtol=1e-12)  # fmt: skip
    expected = jax.jit(jax.grad(masked_nll))(model, trained)
    np.testing.assert_allclose(np.asarray(grads.b), np.asarray(expected.b), rtol=1e-10,
                               atol=1e-15)  # fmt: skip
    np.testing.assert_allclose(float(grads.w), float(expected.w), rtol=1e-10)
    untrained = ~trained.any(axis=0)
    assert untrained.any() and np.all(np.asarray(grads.b)[untrained] == 0.0)
    # Without dropout, every entry trains (and the input is the data).
    without = jax.jit(jax.grad(lambda m: _loss_fn(heldin, 0)(m, 0.0, batch, KEY)[0]))
    grads0 = without(model)
    assert np.all(np.asarray(grads0.b) != 0.0)

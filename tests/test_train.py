import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import leaves_equal

from jaxdyn import MLPField, TrainingDivergedError, fit, make_step
from jaxdyn.train import load_checkpoint, read_metrics, sample_batch, save_checkpoint


def regression():
    key = jax.random.key(0)
    x = jax.random.normal(key, (128, 2))
    return x, jnp.sin(x)


def model():
    return MLPField(2, 16, 1, key=jax.random.key(1))


def mse(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(lambda xi: model(0.0, xi))(x) - y) ** 2)


def run(tmp=None, steps=60, **kw):
    return fit(
        mse,
        model(),
        regression(),
        optax.adam(1e-2),
        steps=steps,
        batch_size=16,
        key=jax.random.key(2),
        chunk=20,
        run_dir=tmp,
        progress=False,
        **kw,
    )


def test_fit_reduces_loss_and_logs_every_step(tmp_path):
    result = run(tmp_path, steps=200)
    assert result.step == 200 and result.losses.shape == (200,)
    assert result.losses[-20:].mean() < 0.2 * result.losses[:20].mean()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(200))
    np.testing.assert_allclose([r["loss"] for r in rows], result.losses, rtol=1e-6)


def test_fit_matches_hand_written_scan_of_make_step():
    """fit is exactly a lax.scan of make_step with the documented key schedule."""
    data, key, opt = regression(), jax.random.key(2), optax.adam(1e-2)
    step = make_step(mse, opt)
    m, state = model(), opt.init(eqx.filter(model(), eqx.is_inexact_array))
    for s in range(30):
        batch_key, loss_key = jax.random.split(jax.random.fold_in(key, s))
        m, state, loss, _ = eqx.filter_jit(step)(
            m, state, sample_batch(data, 16, batch_key), loss_key
        )
    result = fit(mse, model(), data, opt, steps=30, batch_size=16, key=key, chunk=7, progress=False)
    for a, b in zip(
        jax.tree.leaves(eqx.filter(m, eqx.is_array)),
        jax.tree.leaves(eqx.filter(result.model, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)  # same ops, different fusion


def test_resume_is_bitwise_identical(tmp_path):
    full = run(tmp_path / "full", steps=100)
    run(tmp_path / "cut", steps=40)  # "killed" after two chunks, checkpoint at 40
    resumed = run(tmp_path / "cut", steps=100, resume=True)
    assert resumed.first_step == 40
    assert leaves_equal(full.model, resumed.model)
    assert leaves_equal(full.opt_state, resumed.opt_state)
    assert [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == list(range(100))


def test_resume_drops_metrics_after_the_checkpoint(tmp_path):
    run(tmp_path, steps=60, checkpoint_every=2)  # checkpoints at 40 and 60
    save_checkpoint(
        tmp_path / "checkpoint", load_checkpoint(tmp_path / "checkpoint", _like(step=40)), 40
    )
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 60, "loss": 1.0}) + "\n")
    run(tmp_path, steps=60, resume=True)
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(60))


def _like(step):
    params = eqx.filter(model(), eqx.is_inexact_array)
    return (
        params,
        optax.adam(1e-2).init(params),
        jax.random.key_data(jax.random.key(2)),
        jnp.asarray(step),
    )


def test_resume_with_another_key_is_refused(tmp_path):
    run(tmp_path, steps=20)
    with pytest.raises(ValueError, match="key differs"):
        fit(
            mse,
            model(),
            regression(),
            optax.adam(1e-2),
            steps=40,
            batch_size=16,
            key=jax.random.key(3),
            chunk=20,
            run_dir=tmp_path,
            resume=True,
            progress=False,
        )


class Clock(eqx.Module):
    """A model whose parameter `c` grows by exactly 1 per SGD step (its gradient is -1)."""

    c: jax.Array


def test_divergence_names_step_and_last_checkpoint(tmp_path):
    def loss(model, batch, key):
        return jnp.where(model.c >= 47, jnp.nan, -model.c)

    with pytest.raises(TrainingDivergedError, match=r"nan at step 47; .*checkpoint \(step 40\)"):
        fit(
            loss,
            Clock(jnp.asarray(0.0)),
            regression(),
            optax.sgd(1.0),
            steps=100,
            batch_size=16,
            key=jax.random.key(0),
            chunk=20,
            run_dir=tmp_path,
            progress=False,
        )
    # The checkpoint holds the last good state (c = 40 after 40 steps), not the diverged one.
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[-1]["step"] == 39
    like = (Clock(jnp.asarray(0.0)), optax.sgd(1.0).init(Clock(jnp.asarray(0.0))),
            jax.random.key_data(jax.random.key(0)), jnp.asarray(0))  # fmt: skip
    clock, _, _, step = load_checkpoint(tmp_path / "checkpoint", like)
    assert int(step) == 40 and float(clock.c) == 40.0


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    state = {"w": jnp.arange(3.0)}
    save_checkpoint(tmp_path, state, 1)
    before = (tmp_path / "state.eqx").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(eqx, "tree_serialise_leaves", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, {"w": jnp.zeros(3)}, 2)
    assert (tmp_path / "state.eqx").read_bytes() == before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_sample_batch_is_without_replacement():
    data = (jnp.arange(50), jnp.arange(50) * 2)
    x, y = sample_batch(data, 50, jax.random.key(0))
    assert sorted(np.asarray(x).tolist()) == list(range(50))
    np.testing.assert_array_equal(y, 2 * x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=-1), "steps must be an int >= 0"),
        (dict(chunk=0), "chunk must be an int >= 1"),
        (dict(batch_size=1000), r"batch_size must be an int in \[1, 128\]"),
        (dict(resume=True), "resume=True needs a run_dir"),
    ],
)
def test_fit_bad_arguments(kwargs, match):
    args = dict(steps=10, batch_size=16, key=jax.random.key(0), progress=False) | kwargs
    with pytest.raises(ValueError, match=match):
        fit(mse, model(), regression(), optax.adam(1e-2), **args)


def test_fit_rejects_ragged_data():
    with pytest.raises(ValueError, match="leading sample axis"):
        fit(
            mse,
            model(),
            (jnp.ones((5, 2)), jnp.ones((4, 2))),
            optax.adam(1e-2),
            steps=1,
            batch_size=2,
            key=jax.random.key(0),
            progress=False,
        )


def test_resume_survives_a_torn_metrics_line(tmp_path):
    run(tmp_path, steps=40)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "lo')  # killed mid-append
    run(tmp_path, steps=60, resume=True)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(60))


def test_checkpoint_has_the_usual_permissions(tmp_path):
    save_checkpoint(tmp_path, {"w": jnp.ones(2)}, 1)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "state.eqx").stat().st_mode & 0o777 == 0o666 & ~umask


def test_partial_last_chunk_matches_other_chunkings():
    a = run(steps=45)  # chunks of 20: the last one is 5 steps
    b = fit(mse, model(), regression(), optax.adam(1e-2), steps=45, batch_size=16,
            key=jax.random.key(2), chunk=45, progress=False)  # fmt: skip
    assert a.losses.shape == (45,) and leaves_equal(a.model, b.model)


def test_fit_without_data_lets_the_loss_draw_its_own():
    # Estimating a mean from fresh draws each step: the loss sees batch=None and its key.
    def loss(model, batch, key):
        assert batch is None
        x = 3.0 + jax.random.normal(key, (64,))
        return jnp.mean((model - x) ** 2)

    result = fit(loss, jnp.zeros(()), None, optax.sgd(0.1), steps=60, batch_size=None,
                 key=jax.random.key(0), chunk=30, progress=False)  # fmt: skip
    # 60 SGD steps of rate 0.1 on (m − x̄)²: the start's weight is 0.8⁶⁰ ≈ 1e-6; what is left
    # is the noise of the last few batch means (sd 1/8 each, damped): within 0.2 of 3.
    assert abs(float(result.model) - 3.0) < 0.2
    with pytest.raises(ValueError, match="data=None .* needs batch_size=None"):
        fit(loss, jnp.zeros(()), None, optax.sgd(0.1), steps=1, batch_size=8,
            key=jax.random.key(0), progress=False)  # fmt: skip

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
from jaxdyn.train import (
    fit_batch,
    index_shuffle,
    load_checkpoint,
    loop,
    read_metrics,
    save_checkpoint,
)


def regression():
    key = jax.random.key(0)
    x = jax.random.normal(key, (128, 2))
    return x, jnp.sin(x)


OPTIMIZER = optax.adam(1e-2)  # one object: fit compiles its chunk once per (loss, optimiser)


def model():
    return MLPField(dim=2, width=16, depth=1, key=jax.random.key(1))


def mse(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(lambda xi: model(0.0, xi))(x) - y) ** 2)


def run(tmp=None, steps=60, **kw):
    return fit(
        mse,
        model(),
        regression(),
        OPTIMIZER,
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


def test_fit_matches_hand_written_loop_of_make_step_with_its_batches_and_ema():
    """fit is exactly a loop of make_step on fit_batch's batches with the documented key
    schedule, and its EMA is the moving average of those iterates."""
    data, key, decay = regression(), jax.random.key(2), 0.9
    step = eqx.filter_jit(make_step(mse, OPTIMIZER))
    m = model()
    state = OPTIMIZER.init(eqx.filter(m, eqx.is_inexact_array))
    ema = eqx.filter(m, eqx.is_inexact_array)
    for s in range(30):  # 128 samples in batches of 16: epochs of 8 steps
        loss_key = jax.random.split(jax.random.fold_in(key, s))[1]
        batch = fit_batch(data, s, key=key, batch_size=16)
        m, state, loss, _ = step(m, state, batch, loss_key)
        params = eqx.filter(m, eqx.is_inexact_array)
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
    result = fit(mse, model(), data, OPTIMIZER, steps=30, batch_size=16, key=key, chunk=7,
                 ema_decay=decay, progress=False)  # fmt: skip
    for ours, theirs in ((result.model, m), (result.ema_model, ema)):
        for a, b in zip(
            jax.tree.leaves(eqx.filter(ours, eqx.is_array)),
            jax.tree.leaves(eqx.filter(theirs, eqx.is_array)),
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
    run(tmp_path, steps=40)  # checkpoint at 40
    with open(tmp_path / "metrics.jsonl", "a") as f:  # killed after logging steps 40-44
        f.writelines(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(40, 45))
    run(tmp_path, steps=60, resume=True)
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(60))


def test_resume_with_another_key_is_refused(tmp_path):
    run(tmp_path, steps=20)
    with pytest.raises(ValueError, match="key differs"):
        fit(
            mse,
            model(),
            regression(),
            OPTIMIZER,
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
    # The checkpoint holds the last good state (c = 40 after 40 steps), not the diverged one:
    # resuming up to step 40 trains nothing and returns it.
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[-1]["step"] == 39
    saved = fit(loss, Clock(jnp.asarray(0.0)), regression(), optax.sgd(1.0), steps=40,
                batch_size=16, key=jax.random.key(0), run_dir=tmp_path, resume=True,
                progress=False)  # fmt: skip
    assert saved.first_step == saved.step == 40 and float(saved.model.c) == 40.0


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


def test_epoch_batches_show_every_sample_once_per_epoch():
    data = (jnp.arange(50), jnp.arange(50) * 2)
    key = jax.random.key(0)
    epochs = [
        np.concatenate([fit_batch(data, s, key=key, batch_size=10)[0] for s in range(e, e + 5)])
        for e in (0, 5)
    ]
    for seen in epochs:  # 5 steps of 10 = one epoch: a permutation of the 50 samples
        assert sorted(seen.tolist()) == list(range(50))
    assert not np.array_equal(epochs[0], epochs[1]), "each epoch draws its own order"
    x, y = fit_batch(data, 3, key=key, batch_size=10)
    np.testing.assert_array_equal(y, 2 * x)
    # 50 samples in batches of 16: epochs of 3 steps; the 2 left over wait for a later epoch.
    seen = np.concatenate([fit_batch(data, s, key=key, batch_size=16)[0] for s in range(3)])
    assert len(set(seen.tolist())) == 48


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 65, 1000, 4097])
def test_index_shuffle_is_a_permutation(n):
    """A bijection of {0, …, n-1} for every n (powers of 4 need no cycle walking, the others
    do), a different one for another key, and uniform in the sense that sample i's position
    over many keys averages (n-1)/2."""
    shuffle = jax.jit(index_shuffle, static_argnums=1)
    order = np.asarray(shuffle(jnp.arange(n), n, jax.random.key(0)))
    assert order.dtype == np.int32 and sorted(order.tolist()) == list(range(n))
    if n > 3:
        assert not np.array_equal(order, np.asarray(shuffle(jnp.arange(n), n, jax.random.key(1))))
    if n == 64:
        keys = jax.random.split(jax.random.key(2), 2000)
        orders = np.asarray(jax.vmap(lambda k: index_shuffle(jnp.arange(n), n, k))(keys))
        positions = np.argsort(orders, axis=1)  # where each sample lands
        # Uniform positions have sd sqrt((n²-1)/12) ≈ 18.5; the mean of 2000: 0.41; 5 sd ≈ 2.1.
        assert np.abs(positions.mean(axis=0) - (n - 1) / 2).max() < 2.1
    with pytest.raises(ValueError, match="n=0"):
        index_shuffle(jnp.arange(3), 0, jax.random.key(0))


def test_batches_with_replacement_are_uniform_draws():
    data = jnp.arange(50)
    draws = [fit_batch(data, s, key=jax.random.key(0), batch_size=50,
                       sampling="with_replacement") for s in range(4)]  # fmt: skip
    assert all(0 <= int(d.min()) and int(d.max()) < 50 for d in draws)
    # Drawing 50 of 50 with replacement repeats some (P(no repeat) = 50!/50^50 ≈ 3e-21).
    assert all(len(set(np.asarray(d).tolist())) < 50 for d in draws)
    result = fit(
        mse, model(), regression(), OPTIMIZER, steps=40, batch_size=16, key=jax.random.key(2),
        chunk=20, sampling="with_replacement", progress=False,
    )  # fmt: skip
    assert result.losses[-5:].mean() < result.losses[:5].mean()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=-1), "steps must be an int >= 0"),
        (dict(chunk=0), "chunk must be an int >= 1"),
        (dict(batch_size=1000), r"batch_size must be an int in \[1, 128\]"),
        (dict(resume=True), "resume=True needs a run_dir"),
        (dict(sampling="shuffle"), "unknown sampling='shuffle'"),
        (dict(best_metric="validation.loss"), "best_metric and patience need eval_fn"),
        (dict(eval_fn=lambda m, k: {}, patience=2), "patience needs best_metric"),
        (dict(eval_fn=lambda m, k: {}, mode="lowest"), "mode must be 'min' or 'max'"),
        (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\)"),
        (dict(eval_every=0), "eval_every must be an int >= 1"),
    ],
)
def test_fit_bad_arguments(kwargs, match):
    args = dict(steps=10, batch_size=16, key=jax.random.key(0), progress=False) | kwargs
    with pytest.raises(ValueError, match=match):
        fit(mse, model(), regression(), OPTIMIZER, **args)


def test_fit_rejects_ragged_data():
    with pytest.raises(ValueError, match="leading sample axis"):
        fit(
            mse,
            model(),
            (jnp.ones((5, 2)), jnp.ones((4, 2))),
            OPTIMIZER,
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
    b = fit(mse, model(), regression(), OPTIMIZER, steps=45, batch_size=16,
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


def validation_loss(model, key):
    """The mean squared error on held-out points (a fixed validation split)."""
    x = jax.random.normal(jax.random.key(7), (64, 2))
    return {"loss": mse(model, (x, jnp.sin(x)), key)}


def test_evaluations_are_logged_on_the_row_of_their_step(tmp_path):
    seen = []  # what on_evaluation receives, on the host, as the run goes
    record = lambda step, metrics: seen.append({"step": step, **metrics})  # noqa: E731
    result = run(tmp_path, steps=100, eval_fn=validation_loss, eval_every=2, on_evaluation=record)
    assert [e["step"] for e in result.evaluations] == [40, 80, 100]  # every 2 chunks, and the end
    assert seen == list(result.evaluations)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    logged = [(r["step"], r["validation.loss"]) for r in rows if "validation.loss" in r]
    assert logged == [(e["step"] - 1, e["validation.loss"]) for e in result.evaluations]
    final = validation_loss(result.model, jax.random.key(0))["loss"]  # its key is not used
    np.testing.assert_allclose(result.evaluations[-1]["validation.loss"], final, rtol=1e-12)


def increasing_after_60(model, key):
    """A validation metric that improves until step 60 and worsens after: the step is read
    from a Clock (c grows by one per step)."""
    return {"loss": jnp.abs(model.c - 60.0)}


def clock_loss(model, batch, key):
    return -model.c


def clock_run(tmp_path, steps, **kw):
    return fit(
        clock_loss, Clock(jnp.asarray(0.0)), regression(), optax.sgd(1.0), steps=steps,
        batch_size=16, key=jax.random.key(0), chunk=10, run_dir=tmp_path,
        eval_fn=increasing_after_60, best_metric="validation.loss", progress=False, **kw,
    )  # fmt: skip


def test_early_stopping_keeps_the_best_checkpoint(tmp_path):
    result = clock_run(tmp_path, 200, patience=3, ema_decay=0.5)
    # Evaluated every 10 steps on the EMA of c (decay 1/2: ema = s - 1 + 2^-s after step s),
    # |ema - 60| is 11, 1, 9 at steps 50, 60, 70: best at 60; 70, 80, 90 are worse: stop at 90.
    assert result.stopped_early and result.step == 90 and result.best_step == 60
    np.testing.assert_allclose(result.best_value, 1.0, rtol=1e-9)
    np.testing.assert_allclose(result.best_model.c, 59.0, rtol=1e-9)
    best = load_checkpoint(tmp_path / "best", Clock(jnp.asarray(0.0)))
    assert leaves_equal(best, result.best_model)
    # The run is over: resuming it trains nothing and gives the same best model.
    again = clock_run(tmp_path, 200, patience=3, ema_decay=0.5, resume=True)
    assert again.stopped_early and again.step == 90 and again.first_step == 90
    assert again.best_step == 60 and leaves_equal(again.best_model, result.best_model)


def test_resume_with_evaluation_and_ema_is_bitwise_identical(tmp_path):
    full = clock_run(tmp_path / "full", 120, patience=5, ema_decay=0.9)
    clock_run(tmp_path / "cut", 50, patience=5, ema_decay=0.9)
    resumed = clock_run(tmp_path / "cut", 120, patience=5, ema_decay=0.9, resume=True)
    assert resumed.first_step == 50 and resumed.step == full.step
    for attribute in ("model", "ema_model", "best_model", "opt_state"):
        assert leaves_equal(getattr(full, attribute), getattr(resumed, attribute)), attribute
    assert (full.best_step, full.stopped_early) == (resumed.best_step, resumed.stopped_early)


def test_a_run_killed_between_evaluations_resumes_bitwise_identical(tmp_path, monkeypatch):
    """Evaluations every 2 chunks; the run is killed right after the checkpoint of step 50
    (chunk 5, between evaluations). The resumed run evaluates where the uninterrupted one does
    (steps 60, 80, …: chunks are counted from step 0, not from the resumed call's start)."""
    full = clock_run(tmp_path / "full", 120, patience=5, ema_decay=0.9, eval_every=2)

    class Killed(Exception):
        pass

    def save_then_die(directory, state, step):
        save_checkpoint(directory, state, step)
        if step == 50:
            raise Killed

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        clock_run(tmp_path / "cut", 120, patience=5, ema_decay=0.9, eval_every=2)
    monkeypatch.undo()
    resumed = clock_run(tmp_path / "cut", 120, patience=5, ema_decay=0.9, eval_every=2,
                        resume=True)  # fmt: skip
    assert resumed.first_step == 50
    assert [e["step"] for e in resumed.evaluations] == [
        e["step"] for e in full.evaluations if e["step"] > 50
    ]
    for attribute in ("model", "ema_model", "best_model", "opt_state"):
        assert leaves_equal(getattr(full, attribute), getattr(resumed, attribute)), attribute
    assert (full.best_step, full.best_value) == (resumed.best_step, resumed.best_value)

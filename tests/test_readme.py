"""Every python block of the README runs as written and does what its comments say."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def library(ns, tmp_path):
    sol = ns["sol"]
    assert bool(sol.succeeded)
    np.testing.assert_allclose(sol.ys[-1], np.exp(-1.0) * np.ones(3), rtol=1e-5)  # y' = -y
    assert ns["result"].step == 50 and ns["result"].losses.shape == (50,)
    assert (tmp_path / "runs" / "mine" / "checkpoint" / "state.eqx").is_file()


def stochastic(ns, tmp_path):
    ys = ns["sol"].ys
    assert ys.shape == (1000, 11, 1)
    # E[Y(1)] = exp(0.5) for dY = 0.5 Y dt + 0.8 Y dW; sd(Y(1)) = e^0.5 √(e^0.64 − 1) ≈ 1.44,
    # so the mean of 1000 paths is within 4 standard errors (0.18) of it.
    assert abs(float(ys[:, -1, 0].mean()) - np.exp(0.5)) < 0.18
    assert ns["logits"].shape == (1, 3) and bool(jnp.all(jnp.isfinite(ns["logits"])))


def generative(ns, tmp_path):
    samples = ns["samples"]
    assert samples.shape == (500, 2) and bool(ns["ok"]) and int(ns["nfe"]) > 0
    assert bool(jnp.all(jnp.isfinite(samples)))


def implicit(ns, tmp_path):
    A, theta, F = ns["A"], ns["theta"], ns["F"]
    assert float(jnp.linalg.norm(F(ns["x"], theta))) < 1e-5
    np.testing.assert_allclose(ns["y"], ns["x"], atol=1e-5)  # the flow rests at F's root
    w = ns["w"]
    assert abs(float(w.sum()) - 1.0) < 1e-6 and float(w.min()) >= -1e-7  # on the simplex
    # outer(w*) = |w*|² with w* = A⁻¹θ: its gradient is 2 A⁻¹ A⁻¹ θ (A symmetric).
    w_star = jnp.linalg.solve(A, theta)
    np.testing.assert_allclose(ns["value"], jnp.sum(w_star**2), rtol=1e-5)
    np.testing.assert_allclose(ns["grad"], 2 * jnp.linalg.solve(A, w_star), rtol=1e-4)
    # z = ½ tanh z + θ componentwise: dz_j/dθ_j = 1 / (1 − ½ sech² z_j).
    z = ns["fixed_point"](ns["T"], ns["x0"], theta)[0]
    np.testing.assert_allclose(ns["dz"], 1 / (1 - 0.5 / jnp.cosh(z) ** 2), rtol=1e-5)


def sysid(ns, tmp_path):
    # Lorenz (σ, ρ, β) = (10, 28, 8/3): each true coefficient within 0.2% in float32 too
    c = np.asarray(ns["model"].coefficients)
    true = {(0, 1): -10.0, (0, 2): 10.0, (1, 1): 28.0, (1, 2): -1.0, (1, 6): -1.0,
            (2, 3): -8.0 / 3.0, (2, 5): 1.0}  # fmt: skip
    assert int((c != 0).sum()) == len(true) == int((np.asarray(ns["weak"].coefficients) != 0).sum())
    for index, value in true.items():
        assert abs(c[index] - value) <= 2e-3 * abs(value)
    np.testing.assert_allclose(ns["path"], ns["x"][:100], atol=0.05)  # it follows the data


def regularize(ns, tmp_path):
    # the data are the model's own solution: the loss is the weighted penalty alone
    assert float(ns["penalty"]) > 0
    np.testing.assert_allclose(ns["loss"], 0.1 * ns["penalty"], rtol=1e-6)
    assert float(ns["aux"]["data_loss"]) == 0.0
    leaves = [x for x in jax.tree.leaves(ns["grads"].field) if x is not None]
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert any(float(jnp.abs(x).max()) > 0 for x in leaves)


CHECKS = [library, stochastic, generative, sysid, regularize, implicit]  # one per block, in order


def test_every_block_has_a_check():
    assert len(BLOCKS) == len(CHECKS), "a README python block was added or removed: check it"


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_readme_block_runs(check, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the first block writes runs/mine
    namespace: dict = {}
    with jax.enable_x64(False):  # as a reader runs it (the tests otherwise enable float64)
        exec(compile(BLOCKS[CHECKS.index(check)], str(README), "exec"), namespace)
        check(namespace, tmp_path)

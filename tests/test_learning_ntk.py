"""Neural tangent kernels (`jaxdyn.learning`): the three empirical methods against each other and
a naive Jacobian contraction (float64, tests/conftest.py), the layer recursions against Monte
Carlo, the empirical kernel's convergence to the analytic one with width, and the kernel flow
against `odeint` and against gradient descent of a wide network."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import special

from jaxdyn.learning import (
    NTK_METHODS,
    NTKMLP,
    analytic_kernels,
    empirical_ntk,
    kernel_flow,
)

SIGMA_W2, SIGMA_B2 = 2.0, 0.1


class _Scaled(eqx.Module):
    """An MLP followed by a learned elementwise scale: a parameter outside any affine layer,
    which `method="structured"` hands to the Jacobian contraction."""

    mlp: eqx.nn.MLP
    scale: jax.Array

    def __call__(self, x):
        return self.scale * jnp.tanh(self.mlp(x))


def _naive_ntk(model, x1, x2):
    """`J(x1) J(x2)ᵀ` from `jax.jacrev` of the flattened parameter vector: `(n1, n2, out, out)`."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)

    def jac(x):
        return jax.jacrev(lambda v: jnp.ravel(eqx.combine(unravel(v), static)(x)))(flat)

    j1, j2 = jax.vmap(jac)(x1), jax.vmap(jac)(x2)
    return jnp.einsum("iap,jbp->ijab", j1, j2)


class _Conv(eqx.Module):
    """A convolution with a `(2, 2)` output: no affine layer at all, a 2-D output."""

    conv: eqx.nn.Conv1d

    def __call__(self, x):
        return jnp.tanh(self.conv(x[None]))


def _models():
    """An `NTKLinear` network, `eqx.nn.Linear` layers with a scalar output, a parameter
    outside any affine layer (and a last layer without bias), and a convolution."""
    keys = jax.random.split(jax.random.key(0), 4)
    mlp = eqx.nn.MLP(3, 2, 7, 2, activation=jnp.tanh, use_final_bias=False, key=keys[0])
    return {
        "NTKMLP": NTKMLP(
            dim=3, width=9, depth=2, out=2, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, key=keys[1]
        ),  # fmt: skip
        "scalar output": eqx.nn.MLP(3, "scalar", 5, 1, key=keys[2]),
        "non-affine leaf": _Scaled(mlp, jnp.array([0.7, -1.3])),
        "convolution": _Conv(eqx.nn.Conv1d(1, 2, kernel_size=2, key=keys[3])),
    }


class _Twice(eqx.Module):
    layer: eqx.nn.Linear

    def __call__(self, x):
        return self.layer(self.layer(x))


# The names, not `list(_models())`: building the models at collection compiles ~20 eager
# programs in every worker.
@pytest.mark.parametrize("name", ["NTKMLP", "scalar output", "non-affine leaf", "convolution"])
def test_empirical_ntk_methods_agree(name):
    """The three methods equal a naive `jacrev` contraction to 1e-10 (float64: the sums differ
    in rounding only, ~1e-15 relative), for every output pair, and traced over outputs in
    chunks of inputs (5 = 2 + 2 + 1 padded) and of parameters (at most 20 entries a pass)."""
    model = _models()[name]
    keys = jax.random.split(jax.random.key(1), 2)
    x1, x2 = jax.random.normal(keys[0], (5, 3)), jax.random.normal(keys[1], (4, 3))
    naive = np.asarray(_naive_ntk(model, x1, x2))
    out = naive.shape[-1]
    trace = np.trace(naive, axis1=2, axis2=3)

    @eqx.filter_jit
    def kernels(model, x1, x2):
        found = {}
        for method in NTK_METHODS:
            found[f"{method} pairs"] = empirical_ntk(model, x1, x2, method=method, outputs="pairs")
            found[f"{method} chunked"] = empirical_ntk(
                model, x1, x2, method=method, outputs="trace", chunk=2, param_chunk=20
            )
        found["self"] = empirical_ntk(model, x1)
        return found

    found = kernels(model, x1, x2)
    for method in NTK_METHODS:
        np.testing.assert_allclose(found[f"{method} pairs"], naive, rtol=0, atol=1e-10)
        np.testing.assert_allclose(found[f"{method} chunked"], trace, rtol=0, atol=1e-10)
    self_kernel = np.trace(_naive_ntk(model, x1, x1), axis1=2, axis2=3) / out
    np.testing.assert_allclose(found["self"], self_kernel, rtol=0, atol=1e-10)


def test_empirical_ntk_is_vmappable_over_models():
    """A batch of networks (`eqx.filter_vmap` over keys) gives each network's kernel."""
    keys = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(jax.random.key(3), (4, 3))

    def kernel(key):
        net = NTKMLP(dim=3, width=6, depth=1, key=key)
        return empirical_ntk(net, x, method="structured", chunk=3)

    batched = eqx.filter_jit(jax.vmap(kernel))(keys)
    one = np.asarray(_naive_ntk(NTKMLP(dim=3, width=6, depth=1, key=keys[1]), x, x))[..., 0, 0]
    np.testing.assert_allclose(batched[1], one, rtol=0, atol=1e-10)  # rounding only


def test_empirical_ntk_errors():
    model = _models()["NTKMLP"]
    x = jnp.ones((3, 3))
    with pytest.raises(ValueError, match="unknown method='hessian'"):
        empirical_ntk(model, x, method="hessian")
    with pytest.raises(ValueError, match="unknown outputs='diag'"):
        empirical_ntk(model, x, outputs="diag")
    with pytest.raises(ValueError, match="chunk must be an int >= 1, got 0"):
        empirical_ntk(model, x, chunk=0)
    with pytest.raises(ValueError, match="param_chunk must be an int >= 1"):
        empirical_ntk(model, x, param_chunk=2.5)
    with pytest.raises(ValueError, match=r"x2 must .* shape \(3,\), got shape \(2, 4\)"):
        empirical_ntk(model, x, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"x1 must be a batch .* got shape \(\)"):
        empirical_ntk(model, 1.0)
    with pytest.raises(ValueError, match="model has no parameters"):
        empirical_ntk(lambda x: 2 * x, x)
    with pytest.raises(TypeError, match="floating-point array"):
        empirical_ntk(lambda x: (model(x), x), x)
    with pytest.raises(TypeError, match="model must be a callable"):
        empirical_ntk(jnp.ones(3), x)

    twice = _Twice(eqx.nn.Linear(3, 3, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="called exactly once per input; layer 0 .* 2 times"):
        empirical_ntk(twice, x, method="structured")


# φ and φ' in NumPy, for the Monte Carlo expectations.
_ACTIVATIONS = {
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0).astype(float)),
    "erf": (special.erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-(u**2))),
}


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_kernel_recursions_match_monte_carlo(activation):
    """Each step of the recursion, from `analytic_kernels` at depth `l` to depth `l + 1`,
    against Gaussian expectations by Monte Carlo (200,000 draws of the preactivations of 4
    inputs jointly): within 5 standard errors of the sample means."""
    x = np.random.default_rng(0).normal(size=(4, 3))
    x[3] = -0.5 * x[0]  # a negatively correlated pair
    phi, dphi = _ACTIVATIONS[activation]
    draws = 200_000
    for depth in range(3):
        nngp, ntk = analytic_kernels(
            x, depth=depth, activation=activation, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2
        )
        nngp_next, ntk_next = analytic_kernels(
            x, depth=depth + 1, activation=activation, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2
        )
        u = np.random.default_rng(depth).multivariate_normal(np.zeros(4), nngp, size=draws)
        products = SIGMA_W2 * phi(u)[:, :, None] * phi(u)[:, None, :] + SIGMA_B2
        derivatives = SIGMA_W2 * (dphi(u)[:, :, None] * dphi(u)[:, None, :])
        ntk_samples = products + np.asarray(ntk) * derivatives
        for samples, expected in ((products, nngp_next), (ntk_samples, ntk_next)):
            mean, se = samples.mean(0), samples.std(0) / np.sqrt(draws)
            assert np.all(np.abs(mean - expected) <= 5 * se + 1e-12), (depth, mean, expected)
    # Between two batches: the blocks of the kernels of the joint batch.
    for joint, block in zip(
        analytic_kernels(x, depth=2, activation=activation, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2),
        analytic_kernels(
            x[:1], x[1:], depth=2, activation=activation, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2
        ),
        strict=True,
    ):
        np.testing.assert_allclose(block, joint[:1, 1:], rtol=1e-14)  # the same arithmetic


def test_analytic_kernels_errors():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="unknown activation='tanh'"):
        analytic_kernels(x, depth=1, activation="tanh", sigma_w2=1.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="depth must be an int >= 0, got -1"):
        analytic_kernels(x, depth=-1, sigma_w2=1.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="sigma_b2 must be >= 0, got -0.1"):
        analytic_kernels(x, depth=1, sigma_w2=1.0, sigma_b2=-0.1)
    with pytest.raises(ValueError, match=r"x2 must be inputs \(n2, 3\) .* got shape \(2, 2\)"):
        analytic_kernels(x, np.ones((2, 2)), depth=1, sigma_w2=1.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match=r"NTKMLP takes one input of shape \(3,\), got \(2, 3\)"):
        NTKMLP(dim=3, width=4, depth=1, key=jax.random.key(0))(x)


# The convergence check: ReLU, 2 hidden layers, σ_w² = 2, σ_b² = 0.1, d = 10, 8 inputs.
WIDTHS = (128, 256, 512, 1024, 2048, 4096)
SEEDS, SEED_BATCH = 12, 6


@eqx.filter_jit
def _relative_errors(nets, x, ntk):
    """`‖Θ_emp − Θ‖_F / ‖Θ‖_F` for each width's batch of networks: `(widths, seeds)`."""

    def error(net):
        kernel = empirical_ntk(net, x.astype(jnp.float32), method="structured")
        return jnp.linalg.norm(kernel - ntk) / jnp.linalg.norm(ntk)

    return jnp.stack([eqx.filter_vmap(error)(net) for net in nets])


def _width_errors(seeds: int = SEEDS, batch: int = SEED_BATCH, seed: int = 1) -> np.ndarray:
    """The issue's convergence check: ReLU, 2 hidden layers, σ_w² = 2, σ_b² = 0.1, d = 10,
    8 inputs; `NTKMLP`s at initialisation in float32, `batch` seeds per call of one compiled
    program (peak memory ~1.3 GB at 6). Their parameters are drawn N(0, 1) by NumPy, as
    `NTKMLP` draws them with `jax.random`: threefry draws the 22M entries per seed 4× slower
    under the tests' fast-compile XLA flags (tests/conftest.py)."""
    x = np.random.default_rng(0).normal(size=(8, 10))
    _, ntk = analytic_kernels(x, depth=2, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2)
    rng = np.random.default_rng(seed)
    shapes = [
        eqx.filter_eval_shape(
            lambda key, width=width: NTKMLP(
                dim=10, width=width, depth=2, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
                dtype=jnp.float32, key=key,
            ),
            jax.random.key(0),
        )
        for width in WIDTHS
    ]  # fmt: skip

    def draw(s):
        return jnp.asarray(rng.standard_normal((batch, *s.shape), np.float32))

    errors = [
        np.asarray(_relative_errors([jax.tree.map(draw, shape) for shape in shapes], x, ntk))
        for _ in range(seeds // batch)
    ]
    return np.concatenate(errors, axis=1)


def test_empirical_ntk_converges_to_the_analytic_one_like_one_over_sqrt_width():
    """The relative Frobenius error of `NTKMLP`'s empirical NTK against the analytic one,
    averaged over 12 seeds, falls like `C / √width`: its log-log slope against width lies in
    [−0.7, −0.4]. Measured −0.57 here (bootstrap over the seeds, 95%: [−0.64, −0.50], sd
    0.036); 32 seeds of `NTKMLP`'s own float64 draws gave −0.50 ([−0.54, −0.46])."""
    error = _width_errors()
    slope = np.polyfit(np.log(WIDTHS), np.log(error.mean(axis=1)), 1)[0]
    assert -0.7 <= slope <= -0.4, (slope, error.mean(axis=1))
    assert error.mean(axis=1)[-1] < 0.1, error  # the constant C / √4096: ~0.04 measured


def test_a_wide_erf_network_has_the_analytic_kernel():
    """An erf `NTKMLP` (2 hidden layers of 2048, its own `jax.random` draws) against the
    arcsine recursion: relative Frobenius error below 0.1 (6 seeds measured 0.027–0.047; at
    width 128, 0.14–0.28: the `C / √width` of the ReLU check above)."""
    x = np.random.default_rng(0).normal(size=(8, 10))
    options = {"activation": "erf", "sigma_w2": SIGMA_W2, "sigma_b2": SIGMA_B2}
    _, ntk = analytic_kernels(x, depth=2, **options)

    @eqx.filter_jit
    def error(key):
        net = NTKMLP(dim=10, width=2048, depth=2, **options, key=key)
        kernel = empirical_ntk(net, x, method="structured")
        return jnp.linalg.norm(kernel - ntk) / jnp.linalg.norm(ntk)

    assert error(jax.random.key(0)) < 0.1


def _kernel_problem(key, n=6, m=3, out=2):
    """A training and a test set's kernels from a small network, with predictions and targets."""
    keys = jax.random.split(key, 4)
    net = NTKMLP(dim=3, width=8, depth=1, out=out, key=keys[0])
    x, xt = jax.random.normal(keys[1], (n, 3)), jax.random.normal(keys[2], (m, 3))
    y = jax.random.normal(keys[3], (n, out))
    return net, x, xt, y


def test_kernel_flow_closed_form_matches_odeint():
    """The eigendecomposition's closed form against `odeint` (dopri5 at rtol = atol = 1e-10;
    agreement to 1e-8: measured 1.0e-10, dopri5's global error, with a margin of 100 for
    other builds), for a scalar kernel, a per-output-pair kernel and a singular kernel (two
    repeated training inputs: λ = 0, where the closed form takes its `ηt` limit)."""
    net, x, xt, y = _kernel_problem(jax.random.key(4))
    x = x.at[-1].set(x[0])  # Θ singular
    ts = jnp.linspace(0.0, 3.0, 7)

    @eqx.filter_jit
    def flows(net, x, xt, y):
        f0, f0t = jax.vmap(net)(x), jax.vmap(net)(xt)
        found = {}
        for outputs in ("mean", "pairs"):
            k = empirical_ntk(net, x, outputs=outputs)
            kt = empirical_ntk(net, xt, x, outputs=outputs)
            for solver in ("eigh", "dopri5"):
                found[f"{outputs} {solver}"] = kernel_flow(
                    k, f0, y, ts, lr=0.3, ntk_test=kt, f0_test=f0t, solver=solver,
                    rtol=1e-10, atol=1e-10,
                )  # fmt: skip
        return found, jnp.linalg.eigvalsh(empirical_ntk(net, x))

    found, eigenvalues = flows(net, x, xt, y)
    assert abs(eigenvalues[0]) < 1e-10 * eigenvalues[-1]
    for outputs in ("mean", "pairs"):
        closed, numeric = found[f"{outputs} eigh"], found[f"{outputs} dopri5"]
        assert closed.train.shape == (7, 6, 2) and closed.test.shape == (7, 3, 2)
        np.testing.assert_allclose(closed.train, numeric.train, rtol=0, atol=1e-8)
        np.testing.assert_allclose(closed.test, numeric.test, rtol=0, atol=1e-8)
    # At t = 0 the predictions are the initial ones; the training error decays.
    np.testing.assert_allclose(found["mean eigh"].train[0], jax.vmap(net)(x), atol=1e-12)
    errors = np.linalg.norm(found["mean eigh"].train - y, axis=(1, 2))
    assert np.all(np.diff(errors) < 0)


def test_kernel_flow_errors():
    f0, y = jnp.zeros((3, 1)), jnp.ones((3, 1))
    k, ts = jnp.eye(3), jnp.linspace(0, 1, 3)
    with pytest.raises(ValueError, match=r"ntk must be \(3, 3\) or \(3, 3, 1, 1\)"):
        kernel_flow(jnp.eye(2), f0, y, ts)
    with pytest.raises(ValueError, match="f0 and y must be predictions"):
        kernel_flow(k, f0, jnp.ones((3, 2)), ts)
    with pytest.raises(ValueError, match="give both or neither"):
        kernel_flow(k, f0, y, ts, ntk_test=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"ntk_test must be the test-train kernel \(2, 3"):
        kernel_flow(k, f0, y, ts, ntk_test=jnp.ones((3, 2)), f0_test=jnp.zeros((2, 1)))
    with pytest.raises(ValueError, match="lr must be a positive number"):
        kernel_flow(k, f0, y, ts, lr=0.0)


def _descent_gaps(
    widths=(64, 4096), seeds: int = 3, lr: float = 0.002, steps: int = 400
) -> dict[int, np.ndarray]:
    """Gradient descent (step 0.002, 400 steps, `L = ½ Σ (f − y)²`, 16 training and 8 test
    inputs on the sphere of radius √10, `y = sin(β·x)`) of `NTKMLP`s with one ReLU hidden
    layer, against the kernel flow of each network's initial empirical NTK at `t = step`: the
    largest relative gap between the loss curves, `(seeds, 2)` (train, test) per width. One
    jitted program, vmapped over seeds."""
    d = 10
    keys = jax.random.split(jax.random.key(5), 3)

    def sphere(key, n):
        x = jax.random.normal(key, (n, d))
        return np.sqrt(d) * x / jnp.linalg.norm(x, axis=1, keepdims=True)

    x, xt = sphere(keys[0], 16), sphere(keys[1], 8)
    beta = jax.random.normal(keys[2], (d,)) / np.sqrt(d)
    y, yt = jnp.sin(x @ beta)[:, None], jnp.sin(xt @ beta)[:, None]

    def gaps(net):
        params, static = eqx.partition(net, eqx.is_inexact_array)

        def loss(p, x, y):
            return 0.5 * jnp.sum((jax.vmap(eqx.combine(p, static))(x) - y) ** 2)

        def step(p, _):
            value, grad = jax.value_and_grad(loss)(p, x, y)
            return jax.tree.map(lambda a, g: a - lr * g, p, grad), (value, loss(p, xt, yt))

        _, (train, test) = jax.lax.scan(step, params, None, length=steps + 1)
        flow = kernel_flow(
            empirical_ntk(net, x, method="structured"), jax.vmap(net)(x), y,
            jnp.arange(steps + 1.0), lr=lr,
            ntk_test=empirical_ntk(net, xt, x, method="structured"), f0_test=jax.vmap(net)(xt),
        )  # fmt: skip
        flow_train = 0.5 * jnp.sum((flow.train - y) ** 2, axis=(1, 2))
        flow_test = 0.5 * jnp.sum((flow.test - yt) ** 2, axis=(1, 2))
        pairs = ((train, flow_train), (test, flow_test))
        return jnp.stack([jnp.max(jnp.abs(a - b) / b) for a, b in pairs])

    @eqx.filter_jit
    def sweep():
        out = {}
        for width in widths:
            nets = eqx.filter_vmap(
                lambda k, width=width: NTKMLP(dim=d, width=width, depth=1, sigma_w2=SIGMA_W2,
                                              sigma_b2=SIGMA_B2, key=k)
            )(jax.random.split(jax.random.key(10), seeds))  # fmt: skip
            out[width] = eqx.filter_vmap(gaps)(nets)
        return out

    return {width: np.asarray(gap) for width, gap in sweep().items()}


def test_kernel_flow_predicts_gradient_descent_of_a_wide_network():
    """At width 4096 the train and test loss curves of gradient descent and of the kernel flow
    (`_descent_gaps`) agree within 3% at every step (feature learning moves the kernel by
    O(1/√width); Euler's discretisation of the flow, with ηλ_max ≈ 0.04, ~0.5–1%); at width
    64 the kernel moves and the curves drift apart (the train gap above 10%). Measured (3
    seeds): width 4096, train 0.5–2.0%, test 0.3–0.5%; width 64, train 21–25%, test 2–7%.
    Over 8 seeds the median train gap is 11% at width 256, 3.7% at 1024, 1.3% at 4096; at
    16384 it stays ~1% (the discretisation: 0.7% with half the step and twice the steps)."""
    gaps = _descent_gaps()
    assert np.all(gaps[4096] < 0.03), gaps[4096]
    assert np.all(gaps[64][:, 0] > 0.1), gaps[64]

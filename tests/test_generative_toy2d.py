"""The numerical pieces of the 2-D generative experiments that the smoke tests cannot check:
nfe_quality's straightness integrals and its NFE-to-quality rule (its RK4, now the solve
layer's `solver="rk4"`, is tested in test_solve)."""

import jax.numpy as jnp
import numpy as np

from jaxdyn.experiments.nfe_quality import _straightness_row, steps_to_quality


def test_straightness_of_a_rotation_matches_its_closed_form():
    # b(t, x) = ω J x (J the rotation generator): x(t) = R(ωt) x0, so |x1 − x0|² = 2(1 − cos ω)
    # |x0|², ∫|b|² dt = ω²|x0|², and one Euler step misses x1 by ((1 − cos ω)² + (ω − sin ω)²)
    # |x0|² (I + ωJ − R(ω) is a scaled rotation).
    omega = 1.3
    rotation = jnp.array([[0.0, -omega], [omega, 0.0]])
    x0 = jnp.array([[1.0, 0.5], [-2.0, 0.3], [0.1, -0.7]])
    row = _straightness_row(lambda t, x, args: rotation @ x, x0, 200)
    r2 = float(jnp.mean(jnp.sum(x0**2, axis=1)))
    expected = {
        "transport_cost": 2 * (1 - np.cos(omega)) * r2,
        "kinetic_energy": omega**2 * r2,
        "straightness": 2 * (1 - np.cos(omega)) / omega**2,
        "one_step_deviation": ((1 - np.cos(omega)) ** 2 + (omega - np.sin(omega)) ** 2) * r2,
    }
    for name, value in expected.items():
        # RK4 with 200 steps: global error ~ (ω/200)^4 ~ 2e-9 relative.
        np.testing.assert_allclose(row[name], value, rtol=1e-7, err_msg=name)


def test_straight_paths_have_straightness_one():
    # A constant field moves every point along a straight line at constant speed: S = 1,
    # and one Euler step is exact.
    c = jnp.array([0.7, -1.2])
    x0 = jnp.array([[0.0, 0.0], [1.0, 2.0]])
    row = _straightness_row(lambda t, x, args: c, x0, 3)
    # RK4 integrates a constant exactly: only float64 rounding remains.
    np.testing.assert_allclose(row["straightness"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(row["transport_cost"], float(c @ c), rtol=1e-12)
    assert row["one_step_deviation"] < 1e-24


def test_steps_to_quality_takes_the_fewest_nfe_within_tolerance():
    sweep = [
        {"solver": "euler", "nfe": 1, "w2": 1.0},
        {"solver": "euler", "nfe": 4, "w2": 0.20},
        {"solver": "euler", "nfe": 8, "w2": 0.06},
        {"solver": "euler", "nfe": 16, "w2": 0.05},
        {"solver": "rk4", "nfe": 4, "w2": None},  # diverged: never "good"
        {"solver": "rk4", "nfe": 8, "w2": 0.30},
        {"solver": "dopri5", "nfe": 20, "w2": 0.30},
    ]
    # tolerance max(0.5 × 0.04, 0.01) = 0.02 above the accurate W2² 0.05: W2² ≤ 0.07.
    out = steps_to_quality(sweep, reference_w2=0.05, floor=0.04, factor=0.5, margin=0.01)
    assert out == {"euler": 8, "rk4": None, "dopri5": None}


def test_steps_to_quality_margin_wins_when_larger():
    sweep = [{"solver": "rk4", "nfe": 8, "w2": 0.30}, {"solver": "rk4", "nfe": 4, "w2": 0.34}]
    out = steps_to_quality(sweep, reference_w2=0.05, floor=0.04, factor=0.5, margin=0.3)
    assert out == {"rk4": 4}  # 0.34 ≤ 0.05 + max(0.02, 0.3)

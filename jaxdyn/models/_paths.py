"""The control path of a model that reads one irregularly sampled series (`NeuralCDE`, the
stable neural SDEs): the cubic through its observations, checked against the model's channels."""

import diffrax as dfx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..data import HermiteCoefficients, cubic_path

__all__ = ["series_path"]


def series_path(
    model: str, channels: int, ts: Float[Array, " time"], coefficients: HermiteCoefficients
) -> dfx.CubicInterpolation:
    """`cubic_path(ts, coefficients)` for a `model` built for `channels` channels; coefficients
    of another width are a `ValueError` naming both."""
    got = jnp.shape(coefficients[0])[-1]
    if got != channels:
        raise ValueError(
            f"{model} was built for {channels} channels, but the coefficients have {got} "
            f"(shape {jnp.shape(coefficients[0])})"
        )
    return cubic_path(ts, coefficients)

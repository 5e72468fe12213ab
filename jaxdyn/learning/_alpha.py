"""The output scaling that moves a network between lazy and rich training (Chizat, Oyallon &
Bach 2019, "On lazy training in differentiable programming")."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array

from .._checks import check_positive

__all__ = ["AlphaScaled", "alpha_learning_rate"]


class AlphaScaled(eqx.Module):
    r"""The centred, α-scaled model of Chizat, Oyallon & Bach 2019,

        f_α(w; x) = α (f(w; x) − f(w₀; x)),

    with `w₀` the parameters at construction. Training `f_α` on a loss `ℓ` by gradient descent
    with learning rate `η / α²` (`alpha_learning_rate`) is gradient descent on Chizat et
    al.'s objective `α⁻² ℓ(α (f(w) − f(w₀)))`: the function `f_α` then moves on a time scale
    that does not depend on α, while the weights move `O(1/α)`, so large α is *lazy*
    (the network stays its own linearisation at `w₀`, the kernel stays `K₀`) and small α is
    *rich* (features move). The subtraction of `f(w₀)` is the *centred* model (Kumar et al.
    2024): the output is exactly zero at initialisation.

    **Fields:** `model`, the trained network; `initial`, a frozen copy of it (the same
    arrays at construction); `alpha`, the scale (static).

    **The frozen copy.** `initial` enters `__call__` behind `jax.lax.stop_gradient`, so its
    gradient is exactly zero and an optimiser whose update of a zero gradient is zero (SGD,
    momentum, Adam, RMSProp; `jaxdyn.fit` passes every floating-point array to the optimiser)
    leaves it unchanged. An optimiser that moves parameters without a gradient (weight decay)
    must be masked with `trainable_mask()`, e.g. `optax.masked(optax.add_decayed_weights(λ),
    model.trainable_mask())`. Kernels of the wrapper (`empirical_ntk`) are those of `f_α`:
    `α² K_f`, the frozen copy contributing nothing.

    **Arguments:** `model`, any callable Equinox module; `alpha > 0`.
    """

    model: eqx.Module
    initial: eqx.Module
    alpha: float = eqx.field(static=True)

    def __init__(self, model: eqx.Module, alpha: float):
        check_positive("alpha", alpha)
        self.model = model
        self.initial = model
        self.alpha = float(alpha)

    def __call__(self, *args: Any, **kwargs: Any) -> Array:
        arrays, rest = eqx.partition(self.initial, eqx.is_array)
        initial = eqx.combine(jax.lax.stop_gradient(arrays), rest)
        return jax.tree.map(
            lambda f, f0: self.alpha * (f - f0),
            self.model(*args, **kwargs),
            initial(*args, **kwargs),
        )

    def trainable_mask(self) -> "AlphaScaled":
        """A pytree like this module's floating-point arrays (`eqx.filter(self,
        eqx.is_inexact_array)`, what `jaxdyn.fit` optimises) with `True` on those of `model`
        and `False` on those of `initial`, for `optax.masked`."""
        flags = jax.tree.map(lambda _: True, eqx.filter(self, eqx.is_inexact_array))
        return eqx.tree_at(lambda m: m.initial, flags, jax.tree.map(lambda _: False, flags.initial))


def alpha_learning_rate(learning_rate: float | Callable, alpha: float) -> float | Callable:
    """`η / α²`: the learning rate of `AlphaScaled(model, alpha)` that makes its training
    Chizat et al.'s gradient flow on `α⁻² ℓ(f_α)` (a schedule `η(t)` is divided likewise).
    Pass it to the optimiser, e.g. `optax.sgd(alpha_learning_rate(η, α))`."""
    check_positive("alpha", alpha)
    if callable(learning_rate):
        return lambda count: learning_rate(count) / alpha**2
    check_positive("learning_rate", learning_rate)
    return learning_rate / alpha**2

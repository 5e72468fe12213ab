"""Universal differential equations (Rackauckas et al. 2020, "Universal differential equations
for scientific machine learning"): a vector field made of the terms one knows and a learned
function for the rest, trained through the solver; sparse regression on the learned term's
values then turns it back into equations.
"""

from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree

__all__ = ["UniversalField"]


def _frozen(tree: PyTree) -> PyTree:
    """`tree` with every array leaf behind `stop_gradient` (other leaves unchanged)."""
    return jax.tree.map(lambda a: jax.lax.stop_gradient(a) if eqx.is_array(a) else a, tree)


class UniversalField(eqx.Module):
    """`f(t, y, args) = k(t, y, args) + g(t, y, args)`: the known terms `k` and a learned
    term `g` (e.g. a `jaxdyn.models.MLPField`), both fields for one state `(dim,)`.

    With `freeze_known=True` (the default) the arrays inside `k` (say, the known
    coefficients) are held fixed: they get a zero gradient, while derivatives with respect
    to the state `y` still flow through `k`, as a solve's gradient needs. `learned(t, y, args)`
    is `g` alone, the term to be turned into equations by sparse regression (`jaxdyn.sysid.
    fit_sindy` with `derivative=` its values).
    """

    known: PyTree
    learned: PyTree
    freeze_known: bool = eqx.field(static=True, default=True)

    def __call__(self, t: Any, y: Float[Array, " dim"], args: Any = None) -> Float[Array, " dim"]:
        known = _frozen(self.known) if self.freeze_known else self.known
        return known(t, y, args) + self.learned(t, y, args)

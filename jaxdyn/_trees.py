"""Pytree helpers shared by the solve layer, the implicit solvers and the jaxopt wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

__all__ = ["as_arrays", "check_same_shapes", "shapes", "tree_norm"]


def shapes(tree: PyTree) -> PyTree:
    """The shape of every leaf, for error messages."""
    return jax.tree.map(lambda x: tuple(jnp.shape(x)), tree)


def check_same_shapes(what: str, out: PyTree, reference: PyTree, name: str) -> None:
    """`ValueError` unless `out` (what `what` returned) has the structure and leaf shapes of
    the state `name`."""
    if jax.tree.structure(out) != jax.tree.structure(reference) or shapes(out) != shapes(reference):
        raise ValueError(
            f"{what} must return the structure and shapes of {name}; got {shapes(out)} "
            f"for {name} of shapes {shapes(reference)}"
        )


def as_arrays(tree: PyTree) -> PyTree:
    """Python and NumPy numbers become JAX arrays (so they are traced and differentiated);
    other leaves (functions, strings, None) are left as they are. (JAX's custom VJP also
    hands weak-typed scalars to the forward pass as Python-float subclasses.)"""
    numeric = (bool, int, float, complex, np.ndarray, np.generic)
    return jax.tree.map(lambda v: jnp.asarray(v) if isinstance(v, numeric) else v, tree)


def tree_norm(tree: PyTree) -> Array:
    """The Euclidean norm of all leaves of a pytree together."""
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(tree)))

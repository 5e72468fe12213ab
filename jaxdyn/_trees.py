"""Pytree shape checks shared by the solve layer and the implicit solvers."""

import jax
import jax.numpy as jnp
from jaxtyping import PyTree

__all__ = ["check_same_shapes", "shapes"]


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

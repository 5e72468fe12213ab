"""Which minibatch `fit` trains each step on: epoch-wise shuffling (every sample once per epoch,
as PyTorch and grain loaders do) or independent draws with replacement, both O(batch) per step.

Step `s` of a run with `n` samples and batches of `B` lies in epoch `e = s // (n // B)` at
position `k = s % (n // B)`; its batch is the slice `[k B, (k + 1) B)` of the epoch's
permutation of the samples, drawn from `fold_in(fold_in(key, 2³¹), e)`. The step number alone
fixes the batch, so results do not depend on how a run is chunked or resumed. Each epoch is a
fresh permutation cut into `n // B` batches: the `n mod B` samples at its end wait for another
epoch (PyTorch's `drop_last=True`). With `sampling="with_replacement"` the batch is `B` indices
drawn uniformly from the step's batch key.
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from .._checks import check_choice, check_key

__all__ = ["SAMPLINGS", "Batches", "Sampling", "fit_batch", "num_samples"]

Sampling = Literal["epoch", "with_replacement"]
SAMPLINGS = ("epoch", "with_replacement")
_SHUFFLE = 2**31  # the fold_in tag of the epoch permutations; steps stay below it (int32)

Order = tuple[Int[Array, ""], Int[Array, " n"]] | None  # (epoch, its permutation) or nothing


def num_samples(data: PyTree) -> int:
    """The common leading axis of every leaf of `data`."""
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(data)}
    if not sizes or None in sizes or len(sizes) != 1:
        raise ValueError(
            "data must be a pytree of arrays sharing a leading sample axis; got shapes "
            f"{jax.tree.map(jnp.shape, data)}"
        )
    return sizes.pop()


class Batches(eqx.Module):
    """How step `s` chooses its batch from `n` samples (see the module). `batch_size=None`
    trains on all the data every step."""

    n: int = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True)
    sampling: str = eqx.field(static=True, default="epoch")

    def __check_init__(self):
        check_choice("sampling", self.sampling, SAMPLINGS)

    @property
    def per_epoch(self) -> int:
        """Steps per epoch, `n // batch_size`."""
        return self.n // self.batch_size

    @property
    def shuffles(self) -> bool:
        """Whether the steps carry an epoch permutation."""
        return self.batch_size is not None and self.sampling == "epoch"

    def permutation(self, key: PRNGKeyArray, epoch) -> Int[Array, " n"]:
        """The epoch's order of the samples."""
        epoch_key = jax.random.fold_in(jax.random.fold_in(key, _SHUFFLE), epoch)
        return jax.random.permutation(epoch_key, self.n)

    def start(self, key: PRNGKeyArray, step: int) -> Order:
        """The order a run starting (or resuming) at `step` begins with."""
        if not self.shuffles:
            return None
        epoch = jnp.asarray(step // self.per_epoch, dtype=jnp.int32)
        return epoch, self.permutation(key, epoch)

    def draw(
        self, data: PyTree, step, key: PRNGKeyArray, batch_key: PRNGKeyArray, order: Order
    ) -> tuple[Order, PyTree]:
        """`(order, batch)` for `step`: the epoch's permutation is drawn afresh only when the
        step opens a new epoch (`lax.cond`), so a step costs O(batch_size)."""
        if self.batch_size is None:
            return order, data
        if self.sampling == "with_replacement":
            index = jax.random.randint(batch_key, (self.batch_size,), 0, self.n)
        else:
            epoch, permutation = order
            new_epoch = (step // self.per_epoch).astype(epoch.dtype)
            permutation = jax.lax.cond(
                new_epoch == epoch,
                lambda: permutation,
                lambda: self.permutation(key, new_epoch),
            )
            position = (step % self.per_epoch) * self.batch_size
            index = jax.lax.dynamic_slice_in_dim(permutation, position, self.batch_size)
            order = (new_epoch, permutation)
        return order, jax.tree.map(lambda x: x[index], data)


def fit_batch(
    data: PyTree,
    step: int,
    *,
    key: PRNGKeyArray,
    batch_size: int,
    sampling: Sampling = "epoch",
) -> PyTree:
    """The minibatch `fit(..., key=key, batch_size=batch_size, sampling=sampling)` trains step
    `step` on, for reproducing a run outside `fit` (it draws the epoch's permutation here, an
    O(n log n) sort, where `fit` keeps it from step to step)."""
    check_key(key, "fit_batch")
    batches = Batches(num_samples(data), batch_size, sampling)
    batch_key = jax.random.split(jax.random.fold_in(key, step))[0]
    return batches.draw(data, jnp.asarray(step), key, batch_key, batches.start(key, step))[1]

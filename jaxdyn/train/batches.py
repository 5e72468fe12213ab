"""Which minibatch `fit` trains each step on: epoch-wise shuffling (every sample once per epoch,
as PyTorch and grain loaders do) or independent draws with replacement, both O(batch) per step.

Step `s` of a run with `n` samples and batches of `B` lies in epoch `e = s // (n // B)` at
position `k = s % (n // B)`; its batch is the samples `π_e(k B), …, π_e(k B + B − 1)` of the
epoch's permutation `π_e`. `π_e` is never materialised (an O(n log n) sort per epoch: 0.5 s for
a million samples on a CPU core, longer than hundreds of small steps): it is a keyed Feistel
network on the `2^{2h} ≥ n` integers of `2h` bits, with cycle walking back into `[0, n)` — the
"index shuffle" of grain and of TensorFlow's `tf.random.experimental.index_shuffle` (Black &
Rogaway 2002, "Ciphers with arbitrary finite domains") — so `π_e(i)` costs O(1) and a step
O(B). Its round keys come from `fold_in(fold_in(key, 2³¹), e)`. The step number alone fixes
the batch, so results do not depend on how a run is chunked or resumed. Each epoch is cut
into `n // B` batches: the `n mod B` samples at the end of its order wait for another epoch
(PyTorch's `drop_last=True`). With `sampling="with_replacement"` the batch is `B` indices
drawn uniformly from the step's batch key.
"""

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from .._checks import check_choice, check_key

__all__ = ["SAMPLINGS", "Batches", "Sampling", "fit_batch", "index_shuffle", "num_samples"]

Sampling = Literal["epoch", "with_replacement"]
SAMPLINGS = ("epoch", "with_replacement")
_SHUFFLE = 2**31  # the fold_in tag of the epoch permutations; steps stay below it (int32)

_ROUNDS = 6  # Feistel rounds (Luby-Rackoff: 4 give a pseudo-random permutation)


def _mix(x: Array) -> Array:
    """A bijective avalanche hash of `uint32` words (Wellons' lowbias32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def index_shuffle(index: Int[Array, "*shape"], n: int, key: PRNGKeyArray) -> Int[Array, "*shape"]:
    """`π(index)` for the pseudo-random permutation `π` of `{0, …, n − 1}` that `key` picks,
    in O(1) per index (see the module): a Feistel network of `_ROUNDS` rounds on `2h`-bit
    integers, `2^{2h} ≥ n`, applied again while the result is `≥ n` (cycle walking; fewer than
    4 applications on average, since `2^{2h} < 4n`)."""
    if not 1 <= n <= 2**31:
        raise ValueError(f"index_shuffle needs 1 <= n <= 2**31, got n={n}")
    return _index_shuffle(jnp.asarray(index), n, key)


# One program per `n` and index shape: called eagerly, the cycle-walking `while_loop` on a fresh
# closure would compile again at every call.
@functools.partial(jax.jit, static_argnums=1)
def _index_shuffle(index: Int[Array, "*shape"], n: int, key: PRNGKeyArray) -> Int[Array, "*shape"]:
    half = max(1, -(-max(n - 1, 1).bit_length() // 2))  # 2h bits hold every index below n
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(key, (_ROUNDS,), jnp.uint32)

    def encrypt(x):
        left, right = x >> half, x & mask
        for r in range(_ROUNDS):
            left, right = right, left ^ (_mix(right ^ round_keys[r]) & mask)
        return (left << half) | right

    def walk(x):
        return jax.lax.while_loop(lambda y: y >= n, encrypt, encrypt(x))

    flat = jnp.ravel(index).astype(jnp.uint32)
    return jax.vmap(walk)(flat).astype(jnp.int32).reshape(jnp.shape(index))


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

    def epoch_key(self, key: PRNGKeyArray, epoch) -> PRNGKeyArray:
        """The key of epoch `epoch`'s permutation."""
        return jax.random.fold_in(jax.random.fold_in(key, _SHUFFLE), epoch)

    def draw(self, data: PyTree, step, key: PRNGKeyArray, batch_key: PRNGKeyArray) -> PyTree:
        """The batch of `step` (see the module), in O(batch_size)."""
        if self.batch_size is None:
            return data
        if self.sampling == "with_replacement":
            index = jax.random.randint(batch_key, (self.batch_size,), 0, self.n)
        else:
            epoch, position = jnp.divmod(step, self.per_epoch)
            slots = position * self.batch_size + jnp.arange(self.batch_size)
            index = index_shuffle(slots, self.n, self.epoch_key(key, epoch))
        return jax.tree.map(lambda x: x[index], data)


def fit_batch(
    data: PyTree,
    step: int,
    *,
    key: PRNGKeyArray,
    batch_size: int,
    sampling: Sampling = "epoch",
) -> PyTree:
    """The minibatch `fit(..., key=key, batch_size=batch_size, sampling=sampling)` trains step
    `step` on, for reproducing a run outside `fit`."""
    check_key(key, "fit_batch")
    batches = Batches(num_samples(data), batch_size, sampling)
    return _fit_batch(batches, data, jnp.asarray(step), key)


@eqx.filter_jit  # one program for every step (the step is traced)
def _fit_batch(batches: Batches, data: PyTree, step: Array, key: PRNGKeyArray) -> PyTree:
    batch_key = jax.random.split(jax.random.fold_in(key, step))[0]
    return batches.draw(data, step, key, batch_key)

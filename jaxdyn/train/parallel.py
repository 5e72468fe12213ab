"""Data parallelism for `fit` on a one-dimensional device mesh.

The batch is split along its leading axis over the mesh's one axis (conventionally `"data"`);
parameters, optimiser state and data are replicated. Two ways to run a step:

- **compiler** (default): the step is one program over the global batch; `fit` constrains the
  batch's sharding (`NamedSharding(mesh, P(axis))`) and XLA partitions the computation and
  averages the gradients (GSPMD). The numbers are those of one device, up to the order of
  floating-point reductions. A loss that draws its own data (`data=None`) shards its draws with
  `jax.lax.with_sharding_constraint(x, jax.P("data"))` (`fit` sets the mesh while it runs).
- **shard_map**: every device runs the step on its shard (`jax.shard_map`) and the loss,
  metrics and gradients are averaged with `lax.pmean`. Each shard is its own program, so an
  adaptive `batch="joint"` solve takes its own step sequence per shard (jit + NamedSharding
  around a while loop was ~50× slower, diffrax #407), and shard `i` draws its randomness from
  `fold_in(key, i)`: stochastic losses see other noise than on one device.
"""

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

__all__ = ["PARALLEL", "auto_axes", "axis_of", "check_mesh", "replicate", "shard_batch"]

PARALLEL = ("compiler", "shard_map")


def check_mesh(mesh: Mesh, parallel: str, batch_size: int | None, n: int | None) -> None:
    """A one-dimensional mesh whose size divides the batch."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"fit: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"fit: data parallelism needs a one-dimensional mesh, got axes {mesh.axis_names}"
        )
    if parallel not in PARALLEL:
        raise ValueError(f"fit: unknown parallel={parallel!r}; expected one of {list(PARALLEL)}")
    size = mesh.devices.size
    batch = batch_size if batch_size is not None else n
    if batch is not None and batch % size:
        raise ValueError(
            f"fit: the batch ({batch} samples) must split evenly over the mesh's {size} devices"
        )


def auto_axes(mesh: Mesh) -> Mesh:
    """The mesh's devices and axis with `AxisType.Auto`: `fit` places the batch itself, so a
    mesh from `jax.make_mesh` (explicit axes by default since JAX 0.7, under which a sharding
    constraint is an assertion) serves as well as one built with `Mesh(...)`."""
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def axis_of(mesh: Mesh) -> str:
    """The name of the mesh's one axis."""
    return mesh.axis_names[0]


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """`tree` placed on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Inside a jitted step: the batch split along its leading axis over the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec(axis_of(mesh)))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)

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
  `fold_in(key, i)`: stochastic losses see other noise than on one device. With JAX 0.10 a
  Diffrax solve differentiated inside `shard_map` does not trace (diffrax #735; `fit` raises a
  RuntimeError saying so): the checkpoint adjoint fails on one device, every adjoint on two.

**Several processes** (`initialize_distributed`, JAX's own runtime: one process per host, or
per GPU) run the same program; the mesh spans the devices of all of them. Every process holds
the whole dataset and draws the same global batch indices from the step (`batches.py`), and
each device gathers its slice of that batch from its replica of the data: no process reads
another's samples, nothing is sent but the gradients' all-reduce, and the numbers are those of
one process on as many devices. (A dataset too large to replicate would need
`jax.make_array_from_process_local_data` and a per-process draw; jaxdyn's datasets are small.)
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

__all__ = [
    "PARALLEL",
    "auto_axes",
    "axis_of",
    "check_mesh",
    "data_mesh",
    "initialize_distributed",
    "is_primary",
    "local_copy",
    "replicate",
    "shard_batch",
]

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


def local_copy(tree: PyTree) -> PyTree:
    """`tree` with every array that spans other processes' devices (replicated, as `fit`'s
    parameters are) replaced by this process's copy, so that code after `fit` computes with it
    on the local devices as with any array. Other leaves are returned as they are."""

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError("local_copy: a sharded array has no complete local copy")
            return x.addressable_data(0)
        return x

    return jax.tree.map(local, tree)


def is_primary() -> bool:
    """Whether this is process 0, the one that writes files when several processes train
    together (always true for one process)."""
    return jax.process_index() == 0


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join this process to a multi-process JAX run (`jax.distributed.initialize`), before any
    JAX computation. With the three arguments: `coordinator` is `HOST:PORT` of process 0 and
    this process is `process_id` of `num_processes`; with none, JAX reads them from the
    environment (SLURM, Open MPI, Kubernetes, Cloud TPU). CPU devices of different processes
    communicate through gloo (`jax_cpu_collectives_implementation`, JAX's default)."""
    given = (coordinator, num_processes, process_id)
    if any(v is not None for v in given) and any(v is None for v in given):
        raise ValueError(
            "initialize_distributed: give coordinator, num_processes and process_id together "
            f"(or none, to read them from the environment); got {given}"
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(
            f"initialize_distributed: process_id must be in [0, {num_processes}), got {process_id}"
        )
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except ValueError as error:  # JAX found no cluster in the environment
        if coordinator is not None:
            raise
        raise ValueError(
            f"initialize_distributed: no multi-process environment found ({error}); give "
            "coordinator, num_processes and process_id"
        ) from None


def data_mesh(devices: int | None = None) -> Mesh | None:
    """A one-dimensional mesh `("data",)` over the first `devices` devices (`None`: all the
    devices of all processes), for `fit(..., mesh=...)`; `None` when that is one device (no
    data parallelism to do). With several processes the mesh must span all their devices."""
    available = jax.devices()
    count = len(available) if devices is None else devices
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(available):
        raise ValueError(
            f"devices must be an int in [1, {len(available)}] (the devices JAX sees) or None, "
            f"got {devices!r}"
        )
    if jax.process_count() > 1 and count != len(available):
        raise ValueError(
            f"devices={devices} with {jax.process_count()} processes: a multi-process mesh "
            f"spans all {len(available)} devices (devices=None)"
        )
    if count == 1:
        return None
    grid = np.asarray(available[:count])
    return Mesh(grid, ("data",), axis_types=(AxisType.Auto,))

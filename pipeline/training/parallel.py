"""Data parallelism: every training batch split across all devices along one mesh axis.

The train step itself does not change. Its inputs arrive as global ``jax.Array``s,
batches sharded along ``"data"`` (:func:`shard`) and parameters and optimizer state
replicated (:func:`replicate`), and XLA's partitioner (GSPMD) runs each device on its
slice and inserts the gradient all-reduce. The loss is the mean over the *global* batch,
so a sharded run follows the single-device run with the same global batch size (a test
checks this on 4 forced CPU devices).

Several hosts: call :func:`initialize_distributed` first in every process (it reads
``RNNPIPE_COORDINATOR``, ``RNNPIPE_NUM_PROCESSES`` and ``RNNPIPE_PROCESS_ID``, or lets
``jax.distributed.initialize()`` detect a SLURM/TPU/GKE cluster). The mesh then spans
every host's devices; each process computes the same (seeded) global batch and
contributes its own contiguous slice of it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def initialize_distributed() -> bool:
    """Join a multi-host run when one is configured; True if this process is part of one."""
    address = os.environ.get("RNNPIPE_COORDINATOR")
    if address:
        jax.distributed.initialize(coordinator_address=address,
                                   num_processes=int(os.environ["RNNPIPE_NUM_PROCESSES"]),
                                   process_id=int(os.environ["RNNPIPE_PROCESS_ID"]))
        return True
    if os.environ.get("RNNPIPE_DISTRIBUTED") == "auto":  # SLURM, TPU pods, GKE: JAX finds the cluster
        jax.distributed.initialize()
        return True
    return False


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (default: every device of every host)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def mesh_for(batch_size: int, devices: list | None = None) -> Mesh | None:
    """The data mesh if there is more than one device and a batch of ``batch_size`` rows
    divides evenly across them (and across hosts); else None (stay on one device).

    Every batched array of every workload leads with the batch axis, so the batch size
    alone decides it, before the first batch is drawn.
    """
    devices = devices if devices is not None else jax.devices()
    n = len(devices)
    if n < 2 or batch_size % n or batch_size % jax.process_count():
        return None
    return data_mesh(devices)


def shard(tree: Any, mesh: Mesh) -> Any:
    """Global arrays from host data: leading axes split over ``"data"``, scalars replicated.

    Every process passes the same global batch; each contributes the rows that belong to
    it, so a single-process run and a multi-host run see the same global array.
    """
    batched, whole = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
    hosts, me = jax.process_count(), jax.process_index()

    def put(x):
        if np.ndim(x) == 0:
            return jax.device_put(x, whole)
        x = np.asarray(x)
        per = x.shape[0] // hosts
        return jax.make_array_from_process_local_data(batched, x[me * per:(me + 1) * per], x.shape)

    return jax.tree_util.tree_map(put, tree)


def to_host(tree: Any) -> Any:
    """``jax.device_get(tree)``, also for global arrays that span other processes' devices:
    a replicated one is read from this process's own copy, a sharded one (a char LM's
    carry, split over the batch) is gathered from every process. Every process must call
    it at the same point, as it is a collective when anything is sharded across hosts."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree_util.tree_map(get, tree)


def process_options():
    """Orbax's multiprocessing options for a checkpoint folder of this process's own:
    with several processes each one saves and restores its folder alone, with no barrier
    across hosts (every process holds the whole replicated state)."""
    import orbax.checkpoint as ocp

    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf whole on every device of the mesh (parameters, optimizer state)."""
    return jax.device_put(tree, NamedSharding(mesh, P()))

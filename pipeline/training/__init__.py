"""Training infrastructure shared by the three workloads: losses, optimisers, jitted
steps, the loop (:mod:`pipeline.training.loop`), its checkpoints, curves and data
parallelism."""

"""Flax modules, which do no I/O and read no params.yaml (configuration comes in as
fields), and :mod:`pipeline.models.store`, the one reader and writer of model directories."""

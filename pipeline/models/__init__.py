"""Flax modules only: no I/O, no params.yaml. Configuration comes in as fields."""

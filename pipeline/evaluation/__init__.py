"""Scoring: metrics, forecasting baselines, plots, noise bands and the machine
provenance stamped into every metrics file."""

"""Prefect flows that orchestrate the pipeline (run_pipeline, refresh_forecaster).

Flows shell out to DVC or call a stage's ``run``; they never compute and never hold a
second copy of params.yaml. They arrive with the orchestration work (see README).
"""

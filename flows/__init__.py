"""Prefect flows that orchestrate the pipeline.

* ``run_pipeline`` (flows/run_pipeline.py): ``dvc repro`` or ``dvc exp run -S`` for all
  or named stages, metrics as a markdown artifact, ``dvc push`` to a configured remote.
* ``refresh_forecaster`` (flows/refresh_forecaster.py): the scheduled daily refresh.
* flows/serve.py serves prefect.yaml's deployments from one process.

Flows shell out to DVC or call a stage's ``run`` and ``pipeline.serving.promotion``; they never
compute and never hold a second copy of params.yaml.
"""

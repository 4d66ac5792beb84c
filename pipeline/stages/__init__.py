"""One module per stage. ``run(params, variant)`` reads inputs, calls pure code, writes outputs.

Stage modules are named as the stages in ``dvc.yaml`` (``download@<workload>``,
``prepare_nmt``, ``train_nmt@<cell>``, ...).
"""

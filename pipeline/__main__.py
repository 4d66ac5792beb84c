"""``python -m pipeline <stage> [variant]``: the entry point of every dvc.yaml stage."""

import sys

from pipeline import runtime

if __name__ == "__main__":
    runtime.ensure(["-m", "pipeline", *sys.argv[1:]])  # before JAX loads: see pipeline/runtime.py

    from pipeline.cli import main

    raise SystemExit(main())

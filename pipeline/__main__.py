"""``python -m pipeline <stage> [variant]``: the entry point of every dvc.yaml stage."""

from pipeline.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

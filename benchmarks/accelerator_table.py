"""The GPU table of benchmarks/accelerator_check.sh: rnnpipe's scan, rnnpipe on cuDNN and
PyTorch on cuDNN, in training tokens/s, from the results files the check wrote.

    python benchmarks/accelerator_table.py DIR      # DIR: the check's output folder

Each rnnpipe kernel was measured in its own interleaved run against PyTorch (the
``*-scan`` and ``*-cudnn`` files), so each ratio compares two numbers from one run; the
PyTorch column is the median of its two runs' medians, and its range spans both runs.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _rows(path: Path, key: str) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {r["row"]: r for r in json.loads(path.read_text())[key]}


def table(out: Path) -> list[str]:
    runs = {}
    for kernel in ("scan", "cudnn"):
        runs[kernel] = {**_rows(out / f"rnn-speed-{kernel}.json", "rows"),
                        **_rows(out / f"nmt-speed-{kernel}.json", "training")}
    names = list(dict.fromkeys([*runs["scan"], *runs["cudnn"]]))
    machine = next((json.loads(p.read_text())["machine"] for p in sorted(out.glob("*-speed-*.json"))), {})
    lines = [f"{machine.get('device', '?')}, jax {machine.get('jax', '?')}, torch {machine.get('torch', '?')}; "
             f"training tokens/s (target tokens for NMT), median of the rounds; each rnnpipe kernel against "
             f"PyTorch in one interleaved run", "",
             "| row | rnnpipe scan | rnnpipe cuDNN | PyTorch cuDNN | scan / PyTorch | cuDNN / PyTorch |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        cells, ratios, torch = [], [], []
        for kernel in ("scan", "cudnn"):
            r = runs[kernel].get(name)
            if r is None:
                cells.append("-")
                ratios.append("-")
                continue
            j = r["jax"]
            cells.append(f"{j['median_tok_s']:,} ({j['min']:,}-{j['max']:,})")
            ratios.append(f"{r['ratio_jax_over_torch']:.2f}x")
            torch.append(r["torch"])
        t = (f"{round(statistics.median(x['median_tok_s'] for x in torch)):,} "
             f"({min(x['min'] for x in torch):,}-{max(x['max'] for x in torch):,})") if torch else "-"
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {t} | {ratios[0]} | {ratios[1]} |")
    return lines


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="benchmarks/results/accelerator", help="the check's output folder")
    out = Path(ap.parse_args(argv).out)
    lines = table(out)
    (out / "gpu-table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

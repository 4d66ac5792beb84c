"""download@<workload>: fetch a source into data/raw with a checksum, atomically."""

from __future__ import annotations

from pipeline.params import Params
from pipeline.sources.fetch import fetch

WORKLOADS = ("nmt", "charlm", "forecast")


def run(params: Params, workload: str) -> None:
    if workload not in WORKLOADS:
        raise SystemExit(f"download: unknown workload '{workload}'; choose one of {WORKLOADS}")
    source = getattr(params.sources, workload)
    digest = fetch(source.url, source.raw, source.sha256, params.fetch)
    print(f"download@{workload}: {source.url} -> {source.raw} (sha256 {digest[:16]}...)")

"""evaluate_charlm@<cell>: validation nats/char and bits/char, and a generated sample."""

from __future__ import annotations

from pathlib import Path

import jax

from pipeline import artifacts
from pipeline.evaluation import cards, heldout, metrics, noise, provenance
from pipeline.inference import sampler
from pipeline.models.charlm import CharLM
from pipeline.models.store import load_model
from pipeline.params import Params
from pipeline.training.losses import charlm_loss


def run(params: Params, cell: str) -> None:
    p = params.charlm
    model_params, config = load_model(Path(p.paths.models) / cell)
    model = CharLM(**config["model"])
    chars = config["chars"]
    valid_ids = artifacts.read_npz(Path(p.paths.prepared) / "valid.npz")["ids"]
    eval_step = heldout.make_eval_step(charlm_loss(model))
    nats = heldout.stream_loss(
        eval_step, model_params, valid_ids, model, p.train.batch_size, p.train.seq_len
    )
    s = p.sample
    (sample,) = sampler.texts(model, model_params, chars, s.prime, s.length, s.temperature, s.top_k, s.top_p,
                              jax.random.key(s.seed))
    artifacts.write_text(Path(p.paths.samples) / f"charlm-{cell}-sample.txt", sample + "\n")
    stamped = provenance.stamped({"valid_loss": round(nats, 5), "valid_bpc": round(metrics.bits_per_char(nats), 5)},
                                 config.get("kernel"))
    artifacts.write_json(Path(p.paths.metrics) / f"charlm-{cell}.json", stamped)
    train_chars = len(artifacts.read_npz(Path(p.paths.prepared) / "train.npz")["ids"])
    card = cards.charlm_card(cell, config, cards.parameter_count(model_params), stamped, p,
                             params.sources.charlm, artifacts.read_json_if_exists(noise.NOISE_FILE), train_chars,
                             len(valid_ids))
    artifacts.write_text(Path(p.paths.metrics) / "cards" / f"charlm-{cell}.md", cards.render(card))
    print(f"evaluate_charlm@{cell}: {nats:.4f} nats/char = {metrics.bits_per_char(nats):.4f} bpc")
    print(sample[:300])

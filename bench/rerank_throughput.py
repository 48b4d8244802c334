"""Reranking throughput: embedarena's reranker adapter vs sentence-transformers'
`CrossEncoder.predict`, same model, pairs, batch size and device, interleaved in one process.

The model is the bundled all-MiniLM-L6-v2 encoder with a fresh 1-logit head (the start point
`embedarena train reranker` uses; the head's values do not change the cost). Pairs are real
Cranfield queries × their judged abstracts plus random abstracts (`../shared/data`), so
lengths vary the way a top-N rerank does. Prints ours, peer, the ratio, the spread over
repeats, the machine and its load.

    python bench/rerank_throughput.py [--pairs 1000] [--batch 32] [--max-length 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _model(out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from embedarena.embedders.hf import resolve_model_dir

    src = resolve_model_dir("minilm")
    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(src, num_labels=1)
    model = AutoModelForSequenceClassification.from_pretrained(src, config=cfg)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def _pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    from embedarena.data.datasets import load_dataset

    corpus, sets = load_dataset("cranfield")
    text = dict(zip(corpus.ids, corpus.texts))
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    queries = list(next(iter(sets.values())))
    while len(out) < n:
        q = rng.choice(queries)
        docs = [d for d in q.relevant if d in text][:5] + rng.sample(corpus.ids, 5)
        out.extend((q.text, text[d]) for d in docs)
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    from embedarena.embedders.reranker import HFReranker

    pairs = _pairs(args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        path = _model(Path(tmp) / "minilm-ce")
        ours = HFReranker(path, batch_size=args.batch, max_length=args.max_length,
                          device=args.device, progress=False)
        peer = CrossEncoder(str(path), device=args.device, max_length=args.max_length,
                            activation_fn=torch.nn.Identity())
        ours.score_pairs(pairs[:64])  # warm both (load, first kernels)
        peer.predict(pairs[:64], batch_size=args.batch, show_progress_bar=False)
        t_ours, t_peer = [], []
        for _ in range(args.repeats):  # interleaved: a load spike hits both sides
            t0 = time.perf_counter()
            a = ours.score_pairs(pairs)
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = peer.predict(pairs, batch_size=args.batch, show_progress_bar=False)
            t_peer.append(time.perf_counter() - t0)
        diff = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    load = os.getloadavg()
    best_o, best_p = min(t_ours), min(t_peer)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), device {args.device}; load average {load[0]:.2f} {load[1]:.2f}")
    print(f"pairs: {len(pairs)} (Cranfield queries x abstracts), batch {args.batch}, "
          f"max_length {args.max_length}, best of {args.repeats}")
    print(f"ours  (HFReranker.score_pairs): {len(pairs) / best_o:.1f} pairs/s "
          f"(runs {', '.join(f'{t:.2f}' for t in t_ours)} s)")
    print(f"peer  (CrossEncoder.predict):   {len(pairs) / best_p:.1f} pairs/s "
          f"(runs {', '.join(f'{t:.2f}' for t in t_peer)} s)")
    spread = max(t_ours) / min(t_ours) - 1, max(t_peer) / min(t_peer) - 1
    print(f"ratio ours/peer: {best_p / best_o:.2f}x (spread {100 * spread[0]:.0f}% / "
          f"{100 * spread[1]:.0f}%; median ratio "
          f"{statistics.median(t_peer) / statistics.median(t_ours):.2f}x); "
          f"max |score difference| {diff:.2e}")


if __name__ == "__main__":
    main()

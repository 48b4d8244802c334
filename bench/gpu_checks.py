"""GPU checks for training: fp16 and bf16 training steps, the cached loss, mining on the GPU.

Runs `train_embedder` for a few steps on T2Ranking with MiniLM in each precision and prints
loss, seconds and peak GPU memory per run, then mines hard negatives on the GPU (faiss-gpu
when installed, else exact torch search on CUDA) and checks the label-aware invariant.

Usage: python bench/gpu_checks.py --model minilm [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from embedarena.data.datasets import load_dataset_full
from embedarena.data.readers import TrainExample, write_jsonl
from embedarena.training.embedder import TrainConfig, train_embedder
from embedarena.training.mining import MineConfig, faiss_available, mine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    ds = load_dataset_full("t2rank")
    text = dict(zip(ds.corpus.ids, ds.corpus.texts))
    rows = [TrainExample(q.text, [text[d]], []) for q in ds.query_sets["all"]
            for d in q.relevant]
    work = Path(tempfile.mkdtemp(prefix="gpu-checks-"))

    t0 = time.monotonic()
    mined, stats = mine(rows, MineConfig(model={"type": "hf", "path": args.model,
                                                "progress": False},
                                         range_for_sampling=(3, 100), negative_number=7,
                                         cache=False, use_gpu=True),
                        pool=ds.corpus.texts)
    gold: dict[str, set[str]] = {}
    for r in rows:
        gold.setdefault(r.query, set()).update(r.pos)
    leaks = sum(len(set(m.neg) & gold[m.query]) for m in mined)
    print(f"mining: backend {stats.backend}, faiss installed: {faiss_available()}, "
          f"{stats.rows} rows in/{len(mined)} out, {stats.negatives_written} negatives, "
          f"gold from other rows dropped {stats.dropped_gold_other_rows}, gold leaks {leaks}, "
          f"{time.monotonic() - t0:.1f}s", flush=True)
    train = work / "train.jsonl"
    write_jsonl(train, mined)

    runs = [("fp32", {}), ("fp16", {"fp16": True}), ("bf16", {"bf16": True}),
            ("bf16 + cached loss (chunks of 16)", {"bf16": True, "cache_chunk_size": 16}),
            ("bf16 + gradient checkpointing", {"bf16": True, "gradient_checkpointing": True})]
    for name, kw in runs:
        torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        res = train_embedder(TrainConfig(
            model=args.model, train=[str(train)], output_dir=str(work / name.split()[0]),
            max_steps=args.steps, batch_size=args.batch_size, train_group_size=4,
            learning_rate=2e-5, logging_steps=1, report_to=["none"], progress=False,
            extend_vocab=True, **kw))  # type: ignore[arg-type]
        secs = time.monotonic() - t0
        first, last = res.losses[0][1], res.losses[-1][1]
        finite = all(loss == loss and abs(loss) != float("inf") for _, loss in res.losses)
        print(f"{name}: {res.global_step} steps, loss {first:.3f} -> {last:.3f}, finite "
              f"{finite}, {secs:.1f}s, peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()

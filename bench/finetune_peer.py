"""Fine-tuning evidence: embedarena's trainer vs sentence-transformers' MNRL, same everything.

For a dataset (`t2rank` Chinese, `cranfield` English, read in place from ../shared/data):

1. split the queries into train/test (seeded); write the train split as FlagEmbedding train
   JSONL with one row per (query, relevant passage), the shape of label data (seed 004);
2. mine hard negatives for it with the base model (`embedarena.training.mining`, pool = the
   corpus; label-aware, so a query's other relevant passages are never its negatives);
3. optionally extend the base model's vocabulary (`--extend-vocab`, for MiniLM on Chinese);
   both trainers then start from that same extended, untrained model;
4. train (a) embedarena's trainer (InfoNCE, in-batch + hard negatives, false-negative
   masking) and (b) the peer: sentence-transformers' `MultipleNegativesRankingLoss` (scale 20)
   with AdamW + linear warm-up, fed the *same* groups (query, positive, hard negatives) in the
   same batches, epochs, batch size, learning rate and max length;
5. evaluate base / ours / peer on the held-out queries against the full corpus (exact search,
   embedarena's metrics), with a paired randomization test ours vs peer.

The peer runs in a plain loop because `SentenceTransformerTrainer` needs the `datasets`
package, which is not in our lock; the loss module, the model and the optimizer recipe are
sentence-transformers' own.

Usage (CPU or GPU, picked automatically):
    python bench/finetune_peer.py --dataset cranfield --epochs 1 --batch-size 32
    python bench/finetune_peer.py --dataset t2rank --extend-vocab --epochs 3
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedarena.data.datasets import load_dataset_full, split_queries
from embedarena.data.readers import TrainExample, write_jsonl
from embedarena.data.types import Corpus, QuerySet
from embedarena.evaluation.metrics import evaluate
from embedarena.evaluation.run import QueryResult, Run
from embedarena.evaluation.significance import randomization_test
from embedarena.training.data import GroupDataset
from embedarena.training.embedder import TrainConfig, freeze_unused, train_embedder
from embedarena.training.mining import MineConfig, dense_search, mine

METRICS = ["precise@1", "precise@5", "hit@1", "recall@10", "mrr@10", "map@100", "ndcg@10"]


def train_rows(corpus: Corpus, qs: QuerySet) -> list[TrainExample]:
    """One row per (query, relevant passage): label-data shape, with no negatives yet.

    Relevant passages with no text (Cranfield has empty documents) cannot be trained on;
    they are counted and printed, not dropped silently."""
    text = dict(zip(corpus.ids, corpus.texts))
    pairs = [(q.text, text.get(d, "")) for q in qs for d in q.relevant]
    empty = sum(1 for _, t in pairs if not t.strip())
    if empty:
        print(f"skipped {empty} (query, positive) pairs whose passage has no text", flush=True)
    return [TrainExample(qt, [t], []) for qt, t in pairs if t.strip()]


def embed(model_dir: Path, texts: list[str], device: str, max_len: int) -> np.ndarray:
    from embedarena.embedders.hf import HFEmbedder

    emb = HFEmbedder(model_dir, device=device, max_length=max_len, batch_size=64,
                     fp16=False, progress=False)
    return emb.embed_documents(texts)


def run_for(name: str, model_dir: Path, corpus: Corpus, qs: QuerySet, device: str,
            max_len: int, depth: int = 100) -> Run:
    dv = embed(model_dir, corpus.texts, device, max_len)
    qv = embed(model_dir, [q.text for q in qs], device, max_len)
    scores, idx, _ = dense_search(qv, dv, depth, "torch", use_gpu=device != "cpu")
    results = [QueryResult(q.qid, q.text, dict(q.gold), [corpus.ids[i] for i in row],
                           [float(s) for s in srow]) for q, row, srow in zip(qs, idx, scores)]
    return Run(name, qs.name, results)


def train_peer(start: Path, rows: list[TrainExample], out: Path, args: argparse.Namespace,
               device: str) -> float:
    """sentence-transformers' MNRL over exactly our groups and batches; returns seconds."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses  # type: ignore[no-redef]
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    model = SentenceTransformer(str(start), device=device)
    model.max_seq_length = args.max_len
    freeze_unused(model[0].auto_model)  # same trainable parameters as ours
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    ds = GroupDataset(rows, args.group_size, args.seed)
    steps_per_epoch = (len(ds) + args.batch_size - 1) // args.batch_size
    total = steps_per_epoch * args.epochs
    decay = [p for n, p in model.named_parameters()
             if p.requires_grad and not any(x in n for x in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters()
                if p.requires_grad and any(x in n for x in ("bias", "LayerNorm"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if args.bf16 and device == "cuda" \
        else None
    t0 = time.monotonic()
    model.train()
    for epoch in range(args.epochs):
        ds.set_epoch(epoch)
        order = list(range(len(ds)))
        random.Random(f"{args.seed}:{epoch}").shuffle(order)
        for b in range(0, len(order), args.batch_size):
            items = [ds[i] for i in order[b:b + args.batch_size]]
            cols = [[it["query"] for it in items]] + [[it["passages"][j] for it in items]
                                                     for j in range(args.group_size)]
            prep = getattr(model, "preprocess", None) or model.tokenize
            feats = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in prep(c).items()}
                     for c in cols]
            if amp is not None:
                with amp:
                    loss = loss_fn(feats, None)
            else:
                loss = loss_fn(feats, None)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
    secs = time.monotonic() - t0
    model.save(str(out))
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["t2rank", "cranfield"], required=True)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--temperature", type=float, default=0.02)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--test-fraction", type=float, default=0.5)
    ap.add_argument("--range", default="3-60", help="mining range_for_sampling")
    ap.add_argument("--extend-vocab", action="store_true")
    ap.add_argument("--no-mask", action="store_true",
                    help="ablation: do not mask in-batch false negatives in our loss")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for both trainers (GPU)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path("bench/.finetune-work"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = args.work / args.dataset
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_all = time.monotonic()

    ds = load_dataset_full(args.dataset)
    corpus, qs = ds.corpus, next(iter(ds.query_sets.values()))
    train_qs, test_qs = split_queries(qs, args.test_fraction, args.seed)
    rows = train_rows(corpus, train_qs)
    print(f"{args.dataset}: {len(corpus)} passages, {len(train_qs)} train queries "
          f"({len(rows)} (query, positive) rows), {len(test_qs)} test queries; device {device}",
          flush=True)

    from embedarena.embedders.hf import resolve_model_dir

    base = resolve_model_dir(args.model)
    mined, stats = mine(rows, MineConfig(model={"type": "hf", "path": str(base),
                                                "progress": False, "fp16": False},
                                         range_for_sampling=args.range,
                                         negative_number=args.group_size * 2,
                                         seed=args.seed, cache=False,
                                         use_gpu=device == "cuda", backend="torch"),
                        pool=corpus.texts)
    train_file = work / "train.mined.jsonl"
    write_jsonl(train_file, mined)
    print("mining: " + ", ".join(f"{k}={v}" for k, v in stats.table()), flush=True)

    start = base
    if args.extend_vocab:
        from transformers import AutoModel, AutoTokenizer

        from embedarena.embedders.st_format import write_st_files
        from embedarena.training.vocab import extend_vocab, new_tokens_for, vocab_report

        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModel.from_pretrained(base)
        texts = list(dict.fromkeys([r.query for r in mined]
                                   + [t for r in mined for t in (*r.pos, *r.neg)]))
        before = vocab_report(tok, texts)
        res = extend_vocab(model, tok, new_tokens_for(before), seed=args.seed)
        start = work / "base+vocab"
        model.save_pretrained(start)
        tok.save_pretrained(start)
        write_st_files(start, model.config.hidden_size, "mean", True, args.max_len)
        print(f"vocabulary: {before.share:.1%} unknown; added {len(res.added)} tokens "
              f"→ {vocab_report(tok, texts).share:.1%} unknown", flush=True)

    t0 = time.monotonic()
    ours = work / "ours"
    train_embedder(TrainConfig(
        model=str(start), train=[str(train_file)], output_dir=str(ours),
        temperature=args.temperature, train_group_size=args.group_size,
        mask_false_negatives=not args.no_mask,
        query_max_len=args.max_len, passage_max_len=args.max_len, learning_rate=args.lr,
        epochs=args.epochs, batch_size=args.batch_size, warmup_ratio=0.1, weight_decay=0.01,
        bf16=args.bf16 and device == "cuda", seed=args.seed, report_to=["none"],
        progress=False, logging_steps=5))
    t_ours = time.monotonic() - t0
    peer = work / "peer-st-mnrl"
    t_peer = train_peer(start, mined, peer, args, device)

    models: list[tuple[str, Path]] = [("base", base)]
    if start != base:
        models.append(("base+vocab (untrained)", start))
    models += [("embedarena", ours), ("sentence-transformers MNRL", peer)]
    results: dict[str, Any] = {}
    per_query: dict[str, Any] = {}
    for name, d in models:
        m = evaluate(run_for(name, d, corpus, test_qs, device, args.max_len), METRICS)
        results[name] = {s: round(m.mean(s), 4) for s in METRICS}
        per_query[name] = m
    header = f"{'model':<28}" + "".join(f"{s:>11}" for s in METRICS)
    print("\n" + header)
    for name, vals in results.items():
        print(f"{name:<28}" + "".join(f"{vals[s]:>11.4f}" for s in METRICS))
    tests = {}
    for s in ("mrr@10", "ndcg@10", "map@100"):
        p, _ = randomization_test(per_query["sentence-transformers MNRL"].per_query(s),
                                  per_query["embedarena"].per_query(s), seed=args.seed)
        tests[s] = round(p, 4)
    print("\nembedarena vs MNRL, paired randomization test: "
          + ", ".join(f"{s} p={p}" for s, p in tests.items()))
    print(f"train seconds: embedarena {t_ours:.1f}, MNRL {t_peer:.1f}; total "
          f"{time.monotonic() - t_all:.1f}s on {device} "
          f"({torch.cuda.get_device_name(0) if device == 'cuda' else platform.processor()})")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "device": device, "results": results,
                                         "p_values_ours_vs_mnrl": tests,
                                         "command": " ".join(sys.argv)}, indent=2))


if __name__ == "__main__":
    main()

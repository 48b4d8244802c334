"""Merge evidence (LM-Cocktail): does mixing a fine-tune with its base keep general ability?

1. T2Ranking sample (Chinese): queries split 50/50 (seed 0); FlagEmbedding train rows from the
   train half, one per (query, positive) (at most `--positives` per query), hard negatives
   mined in process with `bm25:bigram`;
2. fine-tune MiniLM on them with `--extend-vocab` (MiniLM cannot read Chinese: 61% [UNK]);
3. the extended base: `training.merge.extend_like`, MiniLM with exactly the vocabulary and new-
   token rows the fine-tune started from (the merge's `--align-vocab` uses the same);
4. merge the fine-tune with that extended base: 0.5/0.5, and weights from `--examples` train
   rows (`--from-data`, softmax(-loss / 5));
5. evaluate base / extended base / fine-tuned / merges on the held-out T2Ranking queries (the
   target task) and on Cranfield (English: the "general ability" set), by exact search with
   the `hf` embedder's vectors and embedarena's metrics, plus paired randomization tests of
   each merge against the fine-tune.

On Cranfield the extended base computes what MiniLM computes (the added tokens are Chinese
characters: no Cranfield text contains one, checked), so it is not embedded twice.
`--t2-docs` / `--cranfield-docs` evaluate on a seeded sample of each corpus (every relevant
passage of the evaluated queries plus random others) to keep a CPU run short; 0 = the whole
corpus.

Usage:
    python bench/merge_evidence.py --epochs 3 --json bench/merge_evidence.json
    # the CPU run of bench/RESULTS.md (about 15 minutes on 2 shared cores)
    python bench/merge_evidence.py --positives 1 --epochs 2 --batch-size 8 --group-size 4 \
        --lr 1e-4 --max-len 64 --examples 8 --t2-docs 400 --cranfield-queries 60 \
        --cranfield-docs 600 --work /tmp/merge-work --json bench/merge_evidence.json
    python bench/merge_evidence.py --t2-docs 0 --cranfield-docs 0 --positives 0   # full (GPU)
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

import torch

from embedarena.data.datasets import load_dataset, split_queries
from embedarena.data.readers import TrainExample, write_jsonl
from embedarena.data.types import Corpus, QuerySet
from embedarena.embedders.hf import HFEmbedder, HFSpec, resolve_model_dir
from embedarena.evaluation.metrics import RunMetrics, evaluate
from embedarena.evaluation.run import QueryResult, Run
from embedarena.evaluation.significance import randomization_test
from embedarena.indexer.exact import exact_search
from embedarena.training.embedder import TrainConfig, train_embedder
from embedarena.training.merge import FromData, extend_like, merge_models
from embedarena.training.mining import MineConfig, mine

METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def sample_corpus(corpus: Corpus, qs: QuerySet, n: int, seed: int) -> Corpus:
    """Every relevant passage of `qs` plus random others up to `n` (0: the whole corpus)."""
    if n <= 0 or n >= len(corpus):
        return corpus
    keep = {d for q in qs for d in q.relevant}
    others = [i for i in corpus.ids if i not in keep]
    random.Random(seed).shuffle(others)
    keep |= set(others[:max(0, n - len(keep))])
    idx = [i for i, d in enumerate(corpus.ids) if d in keep]
    return Corpus([corpus.ids[i] for i in idx], [corpus.texts[i] for i in idx],
                  f"{corpus.source} (sample of {len(idx)})")


def train_rows(corpus: Corpus, qs: QuerySet, per_query: int) -> list[TrainExample]:
    text = dict(zip(corpus.ids, corpus.texts))
    rows = []
    for q in qs:
        pos = [text[d] for d in q.relevant if text.get(d, "").strip()]
        rows += [TrainExample(q.text, [p], []) for p in (pos[:per_query] if per_query else pos)]
    return rows


def run_for(model: Path, corpus: Corpus, qs: QuerySet, max_len: int) -> RunMetrics:
    emb = HFEmbedder(model, device="auto", max_length=max_len, batch_size=32, fp16=False,
                     progress=False)
    dv = emb.embed_documents(corpus.texts)
    qv = emb.embed_queries([q.text for q in qs])
    found = exact_search(qv, dv, 100, "dot_product")
    results = [QueryResult(q.qid, q.text, dict(q.gold), [corpus.ids[i] for i in row if i >= 0],
                           [float(s) for s, i in zip(srow, row) if i >= 0])
               for q, row, srow in zip(qs, found.indices, found.scores)]
    return evaluate(Run(model.name, qs.name, results), METRICS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.02, help="training InfoNCE τ")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--positives", type=int, default=2,
                    help="train rows per train query (0: one per relevant passage)")
    ap.add_argument("--examples", type=int, default=16, help="train rows for --from-data")
    ap.add_argument("--merge-temperature", type=float, default=5.0)
    ap.add_argument("--t2-docs", type=int, default=600)
    ap.add_argument("--cranfield-queries", type=int, default=60)
    ap.add_argument("--cranfield-docs", type=int, default=700)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path("bench/.merge-work"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t_all = time.monotonic()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)

    corpus, sets = load_dataset("t2rank")
    train_qs, test_qs = split_queries(next(iter(sets.values())), 0.5, seed=0)
    rows = train_rows(corpus, train_qs, args.positives)
    mined, stats = mine(rows, MineConfig(model="bm25:bigram", range_for_sampling=(3, 60),
                                         negative_number=7, seed=args.seed, cache=False),
                        pool=corpus.texts)
    train_file = args.work / "train.mined.jsonl"
    write_jsonl(train_file, mined)
    examples = args.work / "examples.jsonl"
    write_jsonl(examples, mined[:args.examples])
    print(f"t2rank: {len(train_qs)} train queries → {len(rows)} rows "
          f"({stats.negatives_written} mined negatives), {len(test_qs)} held-out", flush=True)

    base = resolve_model_dir("minilm")
    ft = args.work / "minilm-ft"
    t0 = time.monotonic()
    res = train_embedder(TrainConfig(
        model=str(base), train=[str(train_file)], output_dir=str(ft), extend_vocab=True,
        temperature=args.temperature, train_group_size=args.group_size,
        query_max_len=64, passage_max_len=args.max_len, learning_rate=args.lr,
        epochs=args.epochs, batch_size=args.batch_size, warmup_ratio=0.1, seed=args.seed,
        report_to=["none"], progress=False, logging_steps=5))
    t_train = time.monotonic() - t0
    print(f"fine-tuned: {res.global_step} steps, vocabulary +{res.vocab_added}, "
          f"{t_train:.0f}s", flush=True)
    ext = extend_like(base, ft, args.work / "minilm-extended").path
    # the from-data losses read texts as the evaluation does (same max length)
    parents = [HFSpec.model_validate({"name": n, "path": str(d), "max_length": args.max_len})
               for n, d in (("minilm", base), ("minilm-ft", ft))]
    mix = merge_models(parents, args.work / "mix-0.5", weights=[0.5, 0.5], align_vocab=True)
    data = merge_models(parents, args.work / "mix-data", align_vocab=True,
                        from_data=FromData(examples, temperature=args.merge_temperature,
                                           seed=args.seed))
    assert data.losses is not None
    print(f"from data: losses {data.losses[0]:.4f} (extended base) / {data.losses[1]:.4f} "
          f"(fine-tuned) → weights {data.weights[0]:.4f} / {data.weights[1]:.4f}", flush=True)
    models = {"MiniLM (base)": base, "MiniLM + vocab (extended base, untrained)": ext,
              "fine-tuned": ft, "merged 0.5 / 0.5": mix.output_dir,
              f"merged from data ({data.weights[0]:.2f} / {data.weights[1]:.2f})":
                  data.output_dir}

    cran_corpus, cran_sets = load_dataset("cranfield")
    cran_qs = next(iter(cran_sets.values()))
    if args.cranfield_queries:
        cran_qs = QuerySet(cran_qs.name, cran_qs.queries[:args.cranfield_queries],
                           cran_qs.source)
    evals = {"T2Ranking held-out": (sample_corpus(corpus, test_qs, args.t2_docs, args.seed),
                                    test_qs),
             "Cranfield": (sample_corpus(cran_corpus, cran_qs, args.cranfield_docs, args.seed),
                           cran_qs)}
    from transformers import AutoTokenizer

    tok_ext = AutoTokenizer.from_pretrained(ext)
    new_ids = set(range(len(AutoTokenizer.from_pretrained(base)), len(tok_ext)))
    c_corpus = evals["Cranfield"][0]
    cran_same = not any(new_ids & set(ids) for ids in tok_ext(
        c_corpus.texts + [q.text for q in cran_qs])["input_ids"])
    table: dict[str, dict[str, dict[str, float]]] = {}
    per_query: dict[tuple[str, str], RunMetrics] = {}
    for set_name, (c, qs) in evals.items():
        print(f"{set_name}: {len(qs)} queries, {len(c)} passages", flush=True)
        for name, d in models.items():
            if set_name == "Cranfield" and d == ext and cran_same:
                m = per_query[(set_name, "MiniLM (base)")]
            else:
                m = run_for(Path(d), c, qs, args.max_len)
            per_query[(set_name, name)] = m
            table.setdefault(name, {})[set_name] = {s: round(m.mean(s), 4) for s in METRICS}
            print(f"  {name}: " + ", ".join(f"{s} {m.mean(s):.4f}" for s in METRICS),
                  flush=True)
    tests: dict[str, dict[str, float]] = {}
    merged = [n for n in models if n.startswith("merged")]
    for set_name in evals:
        for name in merged:
            for s in ("ndcg@10", "mrr@10"):
                p, _ = randomization_test(per_query[(set_name, "fine-tuned")].per_query(s),
                                          per_query[(set_name, name)].per_query(s),
                                          seed=args.seed)
                tests[f"{set_name} | {name} vs fine-tuned | {s}"] = round(p, 4)

    sets_ = list(evals)
    print("\n| model | " + " | ".join(f"{s} nDCG@10 / MRR@10" for s in sets_) + " |")
    print("|---|" + "---|" * len(sets_))
    for name, vals in table.items():
        print(f"| {name} | " + " | ".join(
            f"{vals[s]['ndcg@10']:.3f} / {vals[s]['mrr@10']:.3f}" for s in sets_) + " |")
    print("\npaired randomization tests (p): " + "; ".join(f"{k} {v}" for k, v in tests.items()))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    total = time.monotonic() - t_all
    print(f"train {t_train:.0f}s, total {total:.0f}s on {device} ({platform.machine()}, "
          f"{torch.get_num_threads()} threads); Cranfield extended base = base: {cran_same}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "args": {k: str(v) for k, v in vars(args).items()},
            "device": device, "seconds": round(total), "train_steps": res.global_step,
            "vocab_added": res.vocab_added, "from_data": {"losses": data.losses,
                                                          "weights": data.weights},
            "sizes": {k: {"queries": len(q), "passages": len(c)} for k, (c, q) in evals.items()},
            "results": table, "p_values": tests}, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()

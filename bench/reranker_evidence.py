"""Does a reranker fine-tuned on half the queries beat the retriever and its own start point
on the other half? One experiment per dataset, run through `embedarena.run_experiment`.

Split by query (seeded, 50/50). Rows on the held-out half:

* the retriever alone (BM25; `bm25:bigram` on the Chinese T2Ranking sample);
* `retriever+start`: the retriever's top N reranked by the untuned start point (the bundled
  MiniLM encoder with a fresh, seeded 1-logit head: what training starts from);
* `retriever+ft`: the same, reranked by a cross-encoder fine-tuned from MiniLM on the train
  half (`finetune: {kind: reranker}`: negatives mined with the retriever, group loss;
  `--extend-vocab` on Chinese, since MiniLM maps most Chinese characters to [UNK]).

Prints the comparison, each two-stage row against its retriever and the fine-tuned row against
the start point (paired randomization tests over queries), and writes the report and the
run directories under --out (outside the repo: they hold third-party text).

    python bench/reranker_evidence.py --dataset cranfield --out /tmp/rr-cranfield
    python bench/reranker_evidence.py --dataset t2rank --out /tmp/rr-t2rank
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _start_point(out: Path, seed: int) -> Path:
    """MiniLM with a fresh 1-logit head, seeded: the untuned cross-encoder."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from embedarena.embedders.hf import resolve_model_dir

    if (out / "config.json").is_file():
        return out
    src = resolve_model_dir("minilm")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        src, config=AutoConfig.from_pretrained(src, num_labels=1))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["cranfield", "t2rank"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-n", type=int, default=30)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=256)
    args = ap.parse_args()

    import embedarena as ea
    from embedarena.data.datasets import load_dataset, split_queries
    from embedarena.evaluation.significance import compare_paired

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    corpus, sets = load_dataset(args.dataset)
    text = dict(zip(corpus.ids, corpus.texts))
    train_qs, test_qs = split_queries(next(iter(sets.values())), 0.5, args.seed)
    _write(out / "train.jsonl", [{"query": q.text, "pos": [text[d] for d in q.relevant
                                                           if d in text], "neg": []}
                                 for q in train_qs if q.relevant])
    _write(out / "test.jsonl", [{"id": q.qid, "query": q.text,
                                 "pos": [d for d in q.relevant]} for q in test_qs])
    chinese = args.dataset == "t2rank"
    retriever = "bm25:bigram" if chinese else "bm25"
    r_name = "bm25-bigram" if chinese else "bm25"
    start = _start_point(out / "minilm-start", args.seed)
    finetune = {"kind": "reranker", "base": "minilm", "train": str(out / "train.jsonl"),
                "mine": {"range_for_sampling": f"0-{args.top_n}", "negative_number":
                         args.group - 1, "seed": args.seed},
                "loss": "group", "train_group_size": args.group, "epochs": args.epochs,
                "learning_rate": args.lr, "batch_size": args.batch_size,
                "max_len": args.max_len, "seed": args.seed, "report_to": "none",
                "extend_vocab": chinese}
    exp = ea.Experiment(
        name=f"rerank-{args.dataset}", corpus={"dataset": args.dataset},
        queries=[{"path": out / "test.jsonl", "name": "held-out"}],
        metrics=["hit@1", "precise@5", "hit@10", "mrr@10", "map@30", "ndcg@10"],
        index={"prefix": f"embedarena-ev-{args.dataset}-"},
        models=[retriever,
                {"name": f"{r_name}+start", "retriever": r_name, "top_n": args.top_n,
                 "reranker": {"path": str(start), "max_length": args.max_len}},
                {"name": f"{r_name}+ft", "retriever": r_name, "top_n": args.top_n,
                 "max_length": args.max_len, "finetune": finetune}],
        report={"baseline": r_name, "formats": ["md", "xlsx"],
                "key_metrics": ["mrr@10", "map@30", "precise@5"]},
        out=out / "runs")
    t0 = time.monotonic()
    from embedarena.cli.progress import CliProgress

    with CliProgress() as progress:
        res = ea.run_experiment(exp, progress=progress)
    took = time.monotonic() - t0
    from embedarena.cli.console import console

    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average {load[0]:.2f}; {took / 60:.1f} min")
    print(f"{args.dataset}: {len(train_qs)} train / {len(test_qs)} held-out queries (seed "
          f"{args.seed}), top {args.top_n} reranked")
    console.print(res.comparison.to_rich_table())
    key = ("held-out",)
    for metric in ("mrr@10", "map@30", "precise@5", "hit@1"):
        for a, b in ((r_name, f"{r_name}+ft"), (f"{r_name}+start", f"{r_name}+ft"),
                     (r_name, f"{r_name}+start")):
            ma, mb = res.metrics[(a, *key)], res.metrics[(b, *key)]
            va, vb = ma.per_query(metric), mb.per_query(metric)
            keep = ~(ma.excluded | mb.excluded)
            t = compare_paired(a, b, metric, va[keep], vb[keep], n_resamples=10_000, seed=0)
            print(f"{metric}: {b} {t.model_mean:.3f} vs {a} {t.baseline_mean:.3f}: "
                  f"{t.diff:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}], p = {t.p_value:.3g}, "
                  f"wins/ties/losses {t.wins}/{t.ties}/{t.losses}")
    print(f"report: {res.report_paths}")


if __name__ == "__main__":
    main()

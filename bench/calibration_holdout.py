"""Make dev/test runs with real "no label fits" queries, for `embedarena calibrate`.

Public retrieval sets have a gold passage for every query. To measure abstention we hold out
the gold passages of a seeded share of the queries: the corpus loses them, so those queries
(and any other query whose gold was only those passages) have no answer in it. Gold ids that
are not in the corpus are dropped from the saved runs, so "no relevant gold" = "no-match".
Everything is written under --out (outside the repo: it contains third-party text).

    python bench/calibration_holdout.py examples/retrieval-quality/t2rank.yaml \\
        --holdout 0.3 --out /tmp/cal-t2rank
    embedarena calibrate /tmp/cal-t2rank/test --dev /tmp/cal-t2rank/dev --k 1,5
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from embedarena import pipeline as pl
from embedarena.data.datasets import split_queries
from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.embedders.spec import HybridSpec, parse_model_spec
from embedarena.evaluation.hybrid import run_hybrid
from embedarena.experiment import load_experiment
from embedarena.indexer.es import connect


def holdout(corpus: Corpus, qs: QuerySet, share: float, seed: int
            ) -> tuple[Corpus, QuerySet, int]:
    """Drop the gold documents of `share` of the queries; gold restricted to what is left."""
    order = list(range(len(qs)))
    # its own random stream: with the dev/test split's seed, every held-out query would land
    # in the same split (both shuffle the same list the same way)
    random.Random(f"holdout:{seed}").shuffle(order)
    held = {i for i in order[:round(share * len(qs))]}
    drop = {g for i, q in enumerate(qs.queries) if i in held for g in q.relevant}
    keep = [i for i, d in enumerate(corpus.ids) if d not in drop]
    kept = Corpus([corpus.ids[i] for i in keep], [corpus.texts[i] for i in keep],
                  source=f"{corpus.source} minus gold of {len(held)} held-out queries")
    ids = set(kept.ids)
    queries = [Query(q.qid, q.text, {g: v for g, v in q.gold.items() if g in ids})
               for q in qs.queries]
    n_none = sum(1 for q in queries if not q.relevant)
    return kept, QuerySet(qs.name, queries, qs.source), n_none


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--dev-fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    exp = load_experiment(args.experiment)
    corpus = pl.load_corpus_source(exp.corpus)
    qs = pl.load_query_sources(exp.queries)[0]
    corpus, qs, n_none = holdout(corpus, qs, args.holdout, args.seed)
    dev, test = split_queries(qs, 1 - args.dev_fraction, args.seed)
    print(f"{len(corpus)} documents left; {n_none} of {len(qs)} queries have no answer; "
          f"dev {len(dev)} / test {len(test)}")
    client, target = connect()
    prefix = exp.index.prefix.rstrip("-") + "-cal-"
    depth = pl.depth_for(exp.metrics, exp.depth)
    handles, hybrids = {}, []
    with pl.progress_bar() as progress:
        for raw in exp.models:
            spec = parse_model_spec(raw)
            if isinstance(spec, HybridSpec):
                hybrids.append(spec)
                continue
            h = pl.prepare_model(raw, prefix, cache=exp.cache)
            pl.build_index(client, target, h, corpus, pl.index_options(exp.index),
                           progress=progress)
            handles[h.name] = h
        for split, part in (("dev", dev), ("test", test)):
            for h in handles.values():
                run = pl.evaluate_model(client, target, h, part, depth,
                                        exp.index.num_candidates, corpus_sha=corpus.sha256(),
                                        progress=progress)
                run.save(args.out / split / h.name)
            for spec in hybrids:
                run = run_hybrid(client, target, spec, handles, part, depth,
                                 exp.index.num_candidates, corpus_sha=corpus.sha256())
                run.save(args.out / split / spec.name)
    print(f"runs in {args.out}/dev and {args.out}/test")


if __name__ == "__main__":
    main()

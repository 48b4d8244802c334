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

from embedarena.arena import Arena
from embedarena.data.datasets import split_queries
from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.experiment import load_experiment


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
    exp.index.prefix = exp.index.prefix.rstrip("-") + "-cal-"
    whole = Arena(exp)
    assert whole.corpus is not None, "the experiment needs a corpus"
    corpus, qs, n_none = holdout(whole.corpus, whole.query_sets[0], args.holdout, args.seed)
    dev, test = split_queries(qs, 1 - args.dev_fraction, args.seed)
    print(f"{len(corpus)} documents left; {n_none} of {len(qs)} queries have no answer; "
          f"dev {len(dev)} / test {len(test)}")
    arena = Arena(exp, corpus=corpus)  # every row over the reduced corpus
    depth = exp.search_depth()
    for name in exp.model_names:
        row = arena.row(name)
        arena.build(row)
        for split, part in (("dev", dev), ("test", test)):
            arena.search(row, part, depth).save(args.out / split / name)
    print(f"runs in {args.out}/dev and {args.out}/test")


if __name__ == "__main__":
    main()

"""Named public datasets, read in place from where they already are (never copied into a repo).

Each dataset is converted to our types at load time, with its known gotchas handled and
counted (see shared/data/README.md): T2Ranking's passages are pooled into a corpus, Cranfield's
query numbering and inverted relevance scale are mapped, BEIR queries without judgements are
dropped and reported. `load_dataset` returns what the pipeline needs; `load_dataset_full` also
returns the reports and the ids of dropped queries, so nothing disappears silently.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from embedarena import paths
from embedarena.data.readers import (
    LoadReport,
    RecordGuard,
    iter_json_values,
    iter_lines,
    load_corpus_with_report,
    load_queries_with_report,
    load_train_with_report,
)
from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.errors import ConfigError, DataError

ENV_ROOT = "EMBEDARENA_SHARED_DATA"
# src/embedarena/data/datasets.py → the repository root is three folders up.
REPO_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
GITHUB_RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives in the dataset folder, its original public URL
    (repository + pinned commit + path) and the sha256 every copy must have."""

    path: str
    url: str
    sha256: str
    size: int


@dataclass
class LoadedDataset:
    """A named dataset as loaded: the corpus, its query sets and the account of the load."""

    name: str
    folder: Path
    corpus: Corpus
    query_sets: dict[str, QuerySet]
    reports: list[LoadReport] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    dropped_queries: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # folder name in shared/data (the fetch cache uses `name`)
    description: str
    files: tuple[RemoteFile, ...]
    required: tuple[str, ...]  # the files the loader reads
    loader: Callable[[Path], LoadedDataset]


@dataclass(frozen=True)
class _GitHub:
    """Builds RemoteFiles for one repository at one pinned commit."""

    repo: str
    commit: str
    prefix: str = ""

    def __call__(self, path: str, sha256: str, size: int,
                 repo_path: str | None = None) -> RemoteFile:
        url = f"{GITHUB_RAW}/{self.repo}/{self.commit}/{repo_path or self.prefix + path}"
        return RemoteFile(path, url, sha256, size)


# -- loaders ---------------------------------------------------------------------------------
def passage_id(text: str) -> str:
    """Stable short id for a passage that has none: the first 16 hex digits of its sha1."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _load_t2rank(folder: Path) -> LoadedDataset:
    """Pool every pos and neg passage into one corpus; a query's gold is its pos passages."""
    examples, report = load_train_with_report(folder / "t2rank_100.jsonl")
    ids: list[str] = []
    texts: list[str] = []
    by_id: dict[str, str] = {}
    queries: list[Query] = []
    path = folder / "t2rank_100.jsonl"
    for i, ex in enumerate(examples, 1):
        for text in [*ex.pos, *ex.neg]:
            pid = passage_id(text)
            known = by_id.get(pid)
            if known is None:
                by_id[pid] = text
                ids.append(pid)
                texts.append(text)
            elif known != text:
                raise DataError(path, f"two passages share the id {pid}", line=i)
        queries.append(Query(qid=str(i), text=ex.query,
                             gold=dict.fromkeys((passage_id(t) for t in ex.pos), 1.0)))
    corpus = Corpus(ids, texts, source=str(path))
    return LoadedDataset("t2rank", folder, corpus,
                         {"all": QuerySet("t2rank", queries, source=str(path))}, [report],
                         {"passages": len(ids)})


def _smart_records(path: Path, fields: str, ds: LoadedDataset
                   ) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Records of a SMART file (`.I id`, then `.T`/`.A`/`.B`/`.W` sections).

    Cranfield's body text contains a few stray marker lines (doc 240 has `.A`/`.B` inside its
    abstract, docs 576 and 578 a second `.W`); once the body has started, such a line is
    dropped and counted, and the text after it stays in the body.
    """
    report = LoadReport(str(path), "dataset", format="SMART", unit="line")
    guard = RecordGuard(report, skip_bad=False)
    cur: tuple[int, str] | None = None
    sections: dict[str, list[str]] = {}
    section: str | None = None
    markers = {f".{c}" for c in fields}

    def flush() -> tuple[int, str, dict[str, str]] | None:
        if cur is None:
            return None
        return cur[0], cur[1], {k: " ".join(v).strip() for k, v in sections.items()}

    for n, line in iter_lines(path, guard):
        head = line.strip()
        if head.startswith(".I") and (len(head) == 2 or head[2] in " \t"):
            done = flush()
            if done is not None:
                yield done
            rid = head[2:].strip()
            if not rid.isdigit():
                raise DataError(path, f"record id {rid!r} is not a number", line=n)
            cur = (n, rid)
            sections = {c: [] for c in fields}
            section = None
        elif head in markers and cur is not None:
            if section == "W":
                ds.notes["stray section markers dropped"] = (
                    ds.notes.get("stray section markers dropped", 0) + 1)
            else:
                section = head[1]
        elif head:
            if cur is None or section is None:
                raise DataError(path, "text outside a .I record section", line=n)
            sections[section].append(head)
    done = flush()
    if done is not None:
        yield done


def _load_cranfield(folder: Path) -> LoadedDataset:
    """Cranfield 1400: text = title + newline + body; the i-th query is qrels query i;
    gain = 5 - code for codes 1..4 (1 is best); the undefined code -1 is dropped and counted."""
    docs_path, qry_path, rel_path = (folder / "cran.all.1400", folder / "cran.qry",
                                     folder / "cranqrel")
    ds = LoadedDataset("cranfield", folder, Corpus([], []), {})
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, object]] = []
    seen: set[str] = set()
    for n, rid, sec in _smart_records(docs_path, "TABW", ds):
        if rid in seen:
            raise DataError(docs_path, f"duplicate document id {rid}", line=n)
        seen.add(rid)
        title, body = sec["T"], sec["W"]
        text = "\n".join(t for t in (title, body) if t)
        if not text:
            ds.notes["documents with empty title and body"] = (
                ds.notes.get("documents with empty title and body", 0) + 1)
        ids.append(rid)
        texts.append(text)
        metas.append({"title": title, "author": sec["A"], "bibliography": sec["B"]})
    ds.corpus = Corpus(ids, texts, source=str(docs_path), metadata=metas)

    query_text: dict[str, tuple[str, str]] = {}  # ordinal → (text, number in cran.qry)
    for i, (_n, rid, sec) in enumerate(_smart_records(qry_path, "W", ds), 1):
        query_text[str(i)] = (sec["W"], rid)

    gold: dict[str, dict[str, float]] = {}
    report = LoadReport(str(rel_path), "qrels", format="qid docid code", unit="line")
    doc_ids = set(ids)
    for n, line in iter_lines(rel_path, None):
        parts = line.split()
        if not parts:
            continue
        report.read += 1
        if len(parts) != 3:
            raise DataError(rel_path, f"expected 'qid docid code', got {line.strip()!r}", line=n)
        qid, doc, code_s = parts
        try:
            code = int(code_s)
        except ValueError:
            raise DataError(rel_path, f"relevance code {code_s!r} is not an integer",
                            line=n) from None
        if code == -1:
            report.skipped["code -1 (undefined)"] = report.skipped.get("code -1 (undefined)", 0) + 1
            continue
        if code not in (1, 2, 3, 4):
            raise DataError(rel_path, f"relevance code {code} is not one of 1..4 (or -1)", line=n)
        if qid not in query_text:
            raise DataError(rel_path, f"query {qid} is beyond the {len(query_text)} queries of "
                                      f"cran.qry", line=n)
        if doc not in doc_ids:
            raise DataError(rel_path, f"document {doc} is not in cran.all.1400", line=n)
        report.loaded += 1
        gold.setdefault(qid, {})[doc] = float(5 - code)
    ds.notes["qrels rows with code -1 dropped"] = report.skipped.get("code -1 (undefined)", 0)
    queries, dropped = _with_gold(query_text, gold)
    ds.dropped_queries = dropped
    ds.query_sets = {"test": QuerySet("cranfield", queries, source=str(qry_path))}
    ds.reports = [report]
    return ds


def _with_gold(texts: dict[str, tuple[str, str]], gold: dict[str, dict[str, float]]
               ) -> tuple[list[Query], dict[str, list[str]]]:
    """Queries that can be scored, and the ids of those that cannot, by reason."""
    queries: list[Query] = []
    dropped: dict[str, list[str]] = {}
    for qid, (text, _orig) in texts.items():
        g = gold.get(qid)
        if not g:
            dropped.setdefault("no judgements", []).append(qid)
        elif not any(v > 0 for v in g.values()):
            dropped.setdefault("no relevant judgement", []).append(qid)
        else:
            queries.append(Query(qid, text, g))
    return queries, dropped


def _load_beir(folder: Path, name: str) -> LoadedDataset:
    """BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv (with a header). Explicit
    0 grades stay in the gold as judged non-relevant; queries without any judgement cannot be
    scored, so they are dropped from the query set and listed in `dropped_queries`."""
    corpus, corpus_report = load_corpus_with_report(folder / "corpus.jsonl")
    q_path = folder / "queries.jsonl"
    q_report = LoadReport(str(q_path), "queries", format="BEIR queries")
    texts: dict[str, tuple[str, str]] = {}
    for n, rec in iter_json_values(q_path, q_report, RecordGuard(q_report, False)):
        if not isinstance(rec, dict) or not isinstance(rec.get("_id"), str) or not isinstance(
                rec.get("text"), str):
            raise DataError(q_path, "expected {\"_id\": str, \"text\": str}", line=n)
        if rec["_id"] in texts:
            raise DataError(q_path, f"duplicate query id {rec['_id']!r}", line=n)
        texts[rec["_id"]] = (rec["text"], rec["_id"])
        q_report.loaded += 1
    rel_path = folder / "qrels" / "test.tsv"
    rel_report = LoadReport(str(rel_path), "qrels", format="BEIR qrels TSV", unit="line")
    gold: dict[str, dict[str, float]] = {}
    doc_ids = set(corpus.ids)
    for n, line in iter_lines(rel_path, None):
        if not line.strip():
            continue
        parts = line.split("\t")
        if n == 1 and parts and parts[0].strip() == "query-id":
            continue
        rel_report.read += 1
        if len(parts) != 3:
            raise DataError(rel_path, f"expected 3 tab-separated fields, got {len(parts)}",
                            line=n)
        qid, doc, score_s = parts[0], parts[1], parts[2].strip()
        try:
            score = float(score_s)
        except ValueError:
            raise DataError(rel_path, f"score {score_s!r} is not a number", line=n) from None
        if qid not in texts:
            rel_report.note("judgements of queries not in queries.jsonl ignored")
            continue
        if doc not in doc_ids:
            rel_report.note("judged documents not in the corpus")
        rel_report.loaded += 1
        gold.setdefault(qid, {})[doc] = score
    queries, dropped = _with_gold(texts, gold)
    ds = LoadedDataset(name, folder, corpus, {"test": QuerySet(name, queries, str(q_path))},
                       [corpus_report, q_report, rel_report], dict(rel_report.notes), dropped)
    for reason, qids in dropped.items():
        ds.notes[f"queries dropped ({reason})"] = len(qids)
    return ds


def _load_flagembedding_toy(folder: Path) -> LoadedDataset:
    """FlagEmbedding's toy eval: the corpus ids are the texts, the gold labels are texts."""
    sub = folder / "old-examples" / "finetune" / "toy_evaluation_data"
    corpus, c_report = load_corpus_with_report(sub / "toy_corpus.json")
    qs, q_report = load_queries_with_report(sub / "toy_query.json", name="flagembedding-toy")
    return LoadedDataset("flagembedding-toy", folder, corpus, {"test": qs}, [c_report, q_report])


# -- the registry ----------------------------------------------------------------------------
_t2 = _GitHub("NLPJCL/RAG-Retrieval", "4193c8c11efe0119d54d17c1f058f3f8b8047727",
              "example_data/")
_fe = _GitHub("FlagOpen/FlagEmbedding", "7ed43d67ec03fbe5c31c0992dbfa941fb1860549", "")
_cr = _GitHub("DrDesignX/Simple_IR", "e18aea0dd1761074e1721675f51f251f368cd808", "")
_db = _GitHub("agentset-ai/embedding-leaderboard", "7f86b0fd942ba327ef228df7e774ba50cfe9b91a",
          "datasets/dbpedia/")
_FE_NEW = "examples/finetune/"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (
        DatasetSpec(
            "t2rank", "rag-retrieval-t2rank",
            "100 Chinese T2Ranking queries (RAG-Retrieval sample); corpus = pooled pos+neg "
            "passages (1,987)",
            (
                _t2("t2rank_100.jsonl",
                    "b9b3d820d3314f92eb1853ef5ba27bd07dbfe802422e96c68872a8d9bcb3b570", 2592253),
                _t2("t2rank_100.small.jsonl",
                    "068ed9a8add47a676750dfd7f0e956f62744ae4caba5aa0198fcddfe1dd037bc", 266405),
                _t2("t2rank_100.distill.jsonl",
                    "08d2ba9c8839b77accf8f8b91fdaafb71fb839eb766d36ad2dbb7cd135d23727", 2756951),
                _t2("t2rank_100.distill.standard.jsonl",
                    "46f477d77fac63583ab2e0ae0b914090e608c6a561a2786ad85d5b99c6042889", 2636521),
                _t2("lmsft.jsonl",
                    "ed574fb17dd0dd9d14bb1ae47794e21b5caf95dbf3e59a691a694d245236da48", 267),
            ),
            ("t2rank_100.jsonl",), _load_t2rank),
        DatasetSpec(
            "cranfield", "cranfield",
            "Cranfield 1400: 1,400 aeronautics abstracts, 225 queries, graded qrels (English)",
            (
                _cr("cran.all.1400",
                    "b234544b6ceccd131520df4a3cb6d42aee6576eb577933d047e722bbfe7b0b09", 1644706),
                _cr("cran.qry",
                    "bd65642599ac35409bd3941f37c171fb089bc290386863153d708f4394c9f344", 28040),
                _cr("cranqrel",
                    "149999bde29b890eb046325222d35afdbea40f652afee17a1f774356cf8e0911", 19543),
                _cr("cranqrel.readme",
                    "8f4cb2e60ab2324bb3ad980bdc8b9cf6a9b98a08d097d90a351485dd6e25433f", 1449),
            ),
            ("cran.all.1400", "cran.qry", "cranqrel"), _load_cranfield),
        DatasetSpec(
            "dbpedia", "dbpedia-entity-subset-agentset",
            "BEIR DBPedia-Entity subsample: 5,000 docs, 50 queries (40 judged), grades 0/1/2",
            (
                _db("corpus.jsonl",
                    "61b717c96ff548d27ad3d7fbfc2682c43daa538e3e9d0cd39d4ae9e99c1d306c", 2536096),
                _db("queries.jsonl",
                    "93f48e1e465351fbb8d3b5c711c08034e1277e1225553230341bad7e39f16362", 3617),
                _db("qrels/test.tsv",
                    "e92204355209bd2c52eab3ae1b3e09819cd61f4b1f446e413a4872100519e3d0", 179156),
            ),
            ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"),
            lambda folder: _load_beir(folder, "dbpedia")),
        DatasetSpec(
            "flagembedding-toy", "flagembedding-toy",
            "FlagEmbedding toy eval (5 docs, 3 queries, gold given as text) and fine-tune data",
            (
                _fe("old-examples/finetune/toy_finetune_data.jsonl",
                    "89c5abd24f15e3ddebbaba43b0840a3f09b7eb15caa1d5c45afd022a3f53c108", 4522,
                    "research/old-examples/finetune/toy_finetune_data.jsonl"),
                _fe("old-examples/finetune/toy_evaluation_data/toy_corpus.json",
                    "82ec72d400a8d2c1826cd17913c1242a95bf0d684c27974f943addaa3891752d", 123,
                    "research/old-examples/finetune/toy_evaluation_data/toy_corpus.json"),
                _fe("old-examples/finetune/toy_evaluation_data/toy_query.json",
                    "5e5a368beaae73539f7ea6553b6461086e0d1c90a656de2260f88f9963c180fe", 161,
                    "research/old-examples/finetune/toy_evaluation_data/toy_query.json"),
                _fe(_FE_NEW + "embedder/example_data/retrieval/msmarco.jsonl",
                    "a84cc942163a27a26fb1ceb8f177183b1159ae7e0a4dff2177bb9241062ac237", 105098),
                _fe(_FE_NEW + "embedder/example_data/retrieval/nq.jsonl",
                    "2a2d917318bd26f82cb4631b2d55d551d006db7799df2c1f3ceed665ad9df2c0", 637825),
                _fe(_FE_NEW + "embedder/example_data/retrieval/nli.jsonl",
                    "422a4c2042a96979c276aeb65a94c916d9a4beccd95ea595d1de5e2544956187", 3644),
                _fe(_FE_NEW + "reranker/example_data/normal/examples.jsonl",
                    "86879da03121cee52ebdc917707f1e5afec3fc04998e1ef37891912b3bfb9b73", 104028),
            ),
            ("old-examples/finetune/toy_evaluation_data/toy_corpus.json",
             "old-examples/finetune/toy_evaluation_data/toy_query.json"),
            _load_flagembedding_toy),
    )
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; an unknown name lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})") from None


# -- where the files are ---------------------------------------------------------------------
def fetch_root() -> Path:
    """Where `embedarena data fetch` puts datasets (not created here)."""
    return paths.home() / "cache" / "datasets"


def candidate_roots(root: str | Path | None = None) -> list[tuple[str, Path]]:
    """Data roots in the order they are tried: the argument alone when given; else
    $EMBEDARENA_SHARED_DATA, else `<repo>/../shared/data` when it exists; then the fetch
    cache."""
    if root is not None:
        return [("argument", Path(root))]
    out: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_ROOT)
    if env:
        out.append((ENV_ROOT, Path(env)))
    elif REPO_SHARED.is_dir():
        out.append(("shared data", REPO_SHARED))
    out.append(("fetch cache", fetch_root()))
    return out


def _folder_in(spec: DatasetSpec, base: Path) -> Path | None:
    for sub in (spec.folder, spec.name):
        folder = base / sub
        if all((folder / f).is_file() for f in spec.required):
            return folder
    return None


def dataset_dir(name: str, root: str | Path | None = None) -> Path:
    """The folder holding dataset `name` (its shared-data folder name, or its own name as the
    fetch cache lays it out); a missing dataset says how to get it."""
    spec = get_spec(name)
    roots = candidate_roots(root)
    for _label, base in roots:
        folder = _folder_in(spec, base)
        if folder is not None:
            return folder
    looked = "; ".join(f"{label}: {base}" for label, base in roots)
    raise DataError(roots[0][1] / spec.folder,
                    f"dataset '{name}' not found (looked in {looked}); get it with "
                    f"`embedarena data fetch {name}`")


def locate(name: str, root: str | Path | None = None) -> tuple[str, Path] | None:
    """(where, folder) of a dataset, or None when it is nowhere; used by `data list`."""
    spec = get_spec(name)
    for label, base in candidate_roots(root):
        folder = _folder_in(spec, base)
        if folder is not None:
            return label, folder
    return None


# -- loading ---------------------------------------------------------------------------------
def load_dataset_full(name: str, root: str | Path | None = None) -> LoadedDataset:
    """Load a named dataset with its reports and the ids of queries it had to drop."""
    spec = get_spec(name)
    return spec.loader(dataset_dir(name, root))


def load_dataset(name: str, root: str | Path | None = None) -> tuple[Corpus, dict[str, QuerySet]]:
    """Load a named dataset: its corpus and its query sets by split name (first = default)."""
    ds = load_dataset_full(name, root)
    return ds.corpus, ds.query_sets


def split_queries(qs: QuerySet, test_fraction: float, seed: int = 0
                  ) -> tuple[QuerySet, QuerySet]:
    """Seeded train/test split of a query set (for fine-tuning on part of T2Ranking and
    evaluating on the rest). The same seed gives the same split; each part keeps file order."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    n = len(qs)
    if n < 2:
        raise ConfigError(f"cannot split {n} queries into train and test")
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    test_idx = set(order[:n_test])
    train = [q for i, q in enumerate(qs.queries) if i not in test_idx]
    test = [q for i, q in enumerate(qs.queries) if i in test_idx]
    return (QuerySet(f"{qs.name}-train", train, qs.source),
            QuerySet(f"{qs.name}-test", test, qs.source))

"""`embedarena merge` (LM-Cocktail): exact averages, weights from data checked against a hand
computation, every refusal naming the first difference, vocabulary alignment reproducing a
`--extend-vocab` fine-tune's start, rerankers, the CLI, and `merge:` experiment entries."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from embedarena.errors import ConfigError  # noqa: E402
from embedarena.training.merge import (  # noqa: E402
    MERGE_META,
    FromData,
    check_weights,
    extend_like,
    merge_models,
)
from tests.conftest import CliResult, make_tiny_reranker  # noqa: E402
from tests.training.conftest import make_tiny_encoder, write_jsonl  # noqa: E402

TEXTS = ["what is the a", "甲状腺结节", "the of a is", "高血压和糖尿病", "in to and"]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two tiny encoders of one architecture, different random weights."""
    return make_tiny_encoder(tmp_path / "a", seed=0), make_tiny_encoder(tmp_path / "b", seed=1)


def _tensors(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def _bits_equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and bool(
        torch.equal(x.view(torch.int32), y.view(torch.int32)) if x.dtype == torch.float32
        else torch.equal(x, y))


def _embed(d: Path) -> np.ndarray:
    from embedarena.embedders.hf import HFEmbedder

    return HFEmbedder(d, device="cpu", progress=False).embed_documents(TEXTS)


# -- the arithmetic ---------------------------------------------------------------------------
def test_weights_one_and_zero_give_a_parent_back_bit_for_bit(pair: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    a, b = pair
    for w, parent in (([1.0, 0.0], a), ([0.0, 1.0], b)):
        out = tmp_path / f"mix-{w[0]:g}"
        res = merge_models([str(a), str(b)], out, weights=w)
        assert res.weights == w and res.kind == "embedder" and res.output_dir == out.resolve()
        got, want = _tensors(out), _tensors(parent)
        assert list(got) == list(want)
        assert all(_bits_equal(got[k], want[k]) for k in want)
        assert np.array_equal(_embed(out), _embed(parent))
    meta = json.loads((tmp_path / "mix-1" / MERGE_META).read_text())
    assert [m["weight"] for m in meta["models"]] == [1.0, 0.0] and meta["from_data"] is None
    assert {"config.json", "tokenizer.json", "vocab.txt", "model.safetensors", MERGE_META} <= {
        p.name for p in (tmp_path / "mix-1").iterdir()}


def test_half_and_half_is_the_elementwise_mean(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    res = merge_models([str(a), str(b)], tmp_path / "mix", weights=[0.5, 0.5])
    got, ta, tb = _tensors(tmp_path / "mix"), _tensors(a), _tensors(b)
    assert res.tensors == len(ta) and res.parameters == sum(t.numel() for t in ta.values())
    for k in ta:
        assert torch.equal(got[k], (ta[k] + tb[k]) / 2), k
    w = [0.2, 0.3, 0.5]
    c = make_tiny_encoder(tmp_path / "c", seed=2)
    merge_models([str(a), str(b), str(c)], tmp_path / "three", weights=w)
    got, tc = _tensors(tmp_path / "three"), _tensors(c)
    for k in ta:
        want = (ta[k].double() * w[0] + tb[k].double() * w[1] + tc[k].double() * w[2]).float()
        assert torch.equal(got[k], want), k


def test_integer_buffers_are_copied_not_averaged(pair: tuple[Path, Path], tmp_path: Path
                                                 ) -> None:
    """Older BERT files (the bundled MiniLM) store `embeddings.position_ids`; resaved ones do
    not: that is no parameter mismatch."""
    a, b = pair
    state = _tensors(a)
    state["embeddings.position_ids"] = torch.arange(128).unsqueeze(0)
    save_file(state, str(a / "model.safetensors"), metadata={"format": "pt"})
    merge_models([str(a), str(b)], tmp_path / "mix", weights=[0.5, 0.5])
    got = _tensors(tmp_path / "mix")
    assert torch.equal(got["embeddings.position_ids"], torch.arange(128).unsqueeze(0))
    assert os.stat(tmp_path / "mix" / "model.safetensors").st_mode & 0o044 == 0o044


# -- weights from data ----------------------------------------------------------------------
def _examples(tmp_path: Path, n_neg: int = 3) -> Path:
    rows = [{"query": "what is the thyroid", "pos": ["甲状腺结节 the"],
             "neg": ["高血压", "of a is", "糖尿病"][:n_neg]},
            {"query": "高血压头晕", "pos": ["高血压"],
             "neg": ["甲状腺癌", "and in", "肝硬化"][:n_neg]},
            {"query": "a is of", "pos": ["of a is"], "neg": ["to and", "胆管炎", "the"][:n_neg]}]
    return write_jsonl(tmp_path / "examples.jsonl", rows)


def _hand_infonce(model_dir: Path, rows: list[dict], tau: float) -> float:
    """CLS-pooled, unit-length vectors of a plain transformers forward pass; cross-entropy
    of q·p/τ over [pos, *neg] (the order of the negatives does not change it)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def vec(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**enc).last_hidden_state[:, 0].double().numpy()
        return h / np.linalg.norm(h, axis=1, keepdims=True)

    losses = []
    for r in rows:
        q, p = vec([r["query"]])[0], vec([*r["pos"], *r["neg"]])
        s = p @ q / tau
        losses.append(-(s[0] - math.log(np.exp(s).sum())))
    return float(np.mean(losses))


def test_weights_from_data_match_a_hand_computation(pair: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    a, b = pair
    ex = _examples(tmp_path)
    rows = [json.loads(ln) for ln in ex.read_text(encoding="utf-8").splitlines()]
    data = FromData(ex, temperature=0.05, loss_temperature=0.05, neg_number=3, device="cpu")
    res = merge_models([str(a), str(b)], tmp_path / "mix", from_data=data)
    want = [_hand_infonce(d, rows, 0.05) for d in (a, b)]
    assert res.losses == pytest.approx(want, abs=1e-4)
    z = np.exp(-np.array(want) / 0.05)
    assert res.weights == pytest.approx(list(z / z.sum()), abs=1e-4)
    assert math.fsum(res.weights) == pytest.approx(1.0, abs=1e-12)
    again = merge_models([str(a), str(b)], tmp_path / "mix2", from_data=data)
    assert again.weights == res.weights, "the same seed gives the same weights"
    meta = json.loads((tmp_path / "mix" / MERGE_META).read_text())
    assert meta["from_data"]["temperature"] == 0.05 and meta["from_data"]["sha256"]
    assert [m["loss"] for m in meta["models"]] == res.losses
    got, ta, tb = _tensors(tmp_path / "mix"), _tensors(a), _tensors(b)
    k = "embeddings.word_embeddings.weight"
    wa, wb = res.weights
    assert torch.equal(got[k], (ta[k].double() * wa + tb[k].double() * wb).float())


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("weights", "says"), [
    ([0.5, 0.6], "sums to 1.1"), ([0.5, 0.4], "sums to 0.9"), ([1.2, -0.2], "non-negative"),
    ([1.0], "1 weights for 2 models"), ([math.nan, 1.0], "non-negative")])
def test_weights_are_checked_both_ways(weights: list[float], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        check_weights(weights, 2)
    assert check_weights([0.3, 0.7 + 5e-7], 2)  # within 1e-6


def _rewrite(d: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = _tensors(d)
    edit(state)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})


def test_refusals_name_the_first_difference(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    keys = list(safe_open(str(a / "model.safetensors"), "pt").keys())
    out = tmp_path / "mix"

    def refused(models: list[Path], says: str) -> str:
        with pytest.raises(ConfigError, match=says) as e:
            merge_models([str(m) for m in models], out, weights=[1 / len(models)] * len(models))
        assert not out.exists(), "nothing is written when a check fails"
        return str(e.value)

    rr = make_tiny_reranker(tmp_path / "rr")
    assert "architecture" in refused([a, rr], "cross-encoder")
    cfg = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForMaskedLM"]}))
    refused([a, b], r"different architectures \(config architectures")
    (b / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-5,
                                               "hidden_act": "relu"}))
    refused([a, b], "config key 'hidden_act' differs")
    (b / "config.json").write_text(json.dumps(cfg))

    first, later = keys[3], keys[10]
    _rewrite(b, lambda s: [s.__setitem__(k + "_x", s.pop(k)) for k in (later, first)])
    msg = refused([a, b], "parameter")
    assert f"parameter '{first}' of a is not in b" in msg
    _rewrite(b, lambda s: [s.__setitem__(k, s.pop(k + "_x")) for k in (later, first)])
    _rewrite(b, lambda s: [s.__setitem__(k, s[k][..., :-1].clone()) for k in (later, first)])
    assert f"parameter '{first}' has shape" in refused([a, b], "shape")
    # a parameter only the second model has
    c = make_tiny_encoder(tmp_path / "c", seed=2)
    _rewrite(c, lambda s: s.__setitem__("extra.weight", torch.zeros(2)))
    assert "parameter 'extra.weight' of c is not in a" in refused([a, c], "extra")


def test_vocabulary_refusals(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    from embedarena.training.vocab import extend_vocab

    a, b = pair
    tok, model = AutoTokenizer.from_pretrained(b), AutoModel.from_pretrained(b)
    extend_vocab(model, tok, ["龍", "鳳"])
    ext = tmp_path / "ext"
    model.save_pretrained(ext)
    tok.save_pretrained(ext)
    with pytest.raises(ConfigError, match="different vocabularies") as e:
        merge_models([str(a), str(ext)], tmp_path / "m", weights=[0.5, 0.5])
    assert "plus 2 added tokens" in str(e.value) and "--align-vocab" in str(e.value)
    # same size, two tokens swapped
    tj = json.loads((b / "tokenizer.json").read_text(encoding="utf-8"))
    v = tj["model"]["vocab"]
    v["the"], v["of"] = v["of"], v["the"]
    (b / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="first difference at token id") as e:
        merge_models([str(a), str(b)], tmp_path / "m", weights=[0.5, 0.5])
    assert "'the'" in str(e.value) or "'of'" in str(e.value)


def test_the_output_is_never_an_input_and_not_silently_replaced(pair: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    a, b = pair
    with pytest.raises(ConfigError, match="would overwrite the model"):
        merge_models([str(a), str(b)], a, weights=[0.5, 0.5])
    out = tmp_path / "mix"
    merge_models([str(a), str(b)], out, weights=[0.5, 0.5])
    with pytest.raises(ConfigError, match="not empty"):
        merge_models([str(a), str(b)], out, weights=[1.0, 0.0])
    merge_models([str(a), str(b)], out, weights=[1.0, 0.0], overwrite=True)
    assert torch.equal(_tensors(out)["pooler.dense.weight"], _tensors(a)["pooler.dense.weight"])
    with pytest.raises(ConfigError, match="either weights"):
        merge_models([str(a), str(b)], tmp_path / "x")


# -- vocabulary alignment ---------------------------------------------------------------------
def test_align_vocab_merges_with_the_base_the_fine_tune_started_from(tmp_path: Path) -> None:
    """A `--extend-vocab` fine-tune trained with a vanishing learning rate is still its
    starting point: `extend_like` must reproduce its embeddings bit for bit."""
    from embedarena.training.embedder import TrainConfig, train_embedder

    base = make_tiny_encoder(tmp_path / "base")
    rows = [{"query": f"질문 {i} 龍", "pos": [f"답변 {i}"], "neg": [f"다른 {i + 1}"]}
            for i in range(8)]
    train = write_jsonl(tmp_path / "ko.jsonl", rows)
    ft = tmp_path / "ft"
    res = train_embedder(TrainConfig(
        model=str(base), train=[str(train)], output_dir=str(ft), batch_size=4,
        train_group_size=2, learning_rate=1e-30, max_steps=1, report_to=["none"],
        progress=False, device="cpu", warmup_ratio=0.0, extend_vocab=True, seed=7))
    assert res.vocab_added > 0
    ext = extend_like(str(base), str(ft), tmp_path / "ext")
    assert (ext.added, ext.seed, ext.seed_from_training) == (res.vocab_added, 7, True)
    key = "embeddings.word_embeddings.weight"
    assert _bits_equal(_tensors(ext.path)[key], _tensors(ft)[key])

    with pytest.raises(ConfigError, match="--align-vocab"):
        merge_models([str(base), str(ft)], tmp_path / "mix", weights=[0.5, 0.5])
    notes: list[str] = []
    mixed = merge_models([str(base), str(ft)], tmp_path / "mix", weights=[0.5, 0.5],
                         align_vocab=True, log=notes.append)
    assert mixed.aligned == {"base": res.vocab_added} and mixed.template == "ft"
    assert any("vocabulary extended by" in n and "seed 7" in n for n in notes), notes
    got = _tensors(tmp_path / "mix")[key]
    assert torch.equal(got, (_tensors(ext.path)[key] + _tensors(ft)[key]) / 2)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "mix").get_vocab() == \
        AutoTokenizer.from_pretrained(ft).get_vocab()
    meta = json.loads((tmp_path / "mix" / MERGE_META).read_text())
    assert meta["models"][0]["vocab_extended_by"] == res.vocab_added
    assert meta["models"][0]["path"] == str(base.resolve())
    assert _embed(tmp_path / "mix").shape == (len(TEXTS), 32)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mix")], "temp dirs go"


# -- rerankers --------------------------------------------------------------------------------
def test_reranker_merge_loads_and_weights_from_data(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from embedarena.embedders.reranker import HFReranker

    a = make_tiny_reranker(tmp_path / "ra", seed=0)
    b = make_tiny_reranker(tmp_path / "rb", seed=1)
    pairs = [("what is the", "the a is"), ("高血压", "高血压和糖尿病")]
    res = merge_models([str(a), str(b)], tmp_path / "rmix", weights=[1.0, 0.0])
    assert res.kind == "reranker"
    got = HFReranker(tmp_path / "rmix", device="cpu").score_pairs(pairs)
    assert np.array_equal(got, HFReranker(a, device="cpu").score_pairs(pairs))

    ex = _examples(tmp_path)
    rows = [json.loads(ln) for ln in ex.read_text(encoding="utf-8").splitlines()]
    data = FromData(ex, temperature=0.01, neg_number=3, device="cpu")
    res = merge_models([f"reranker:{a}", f"reranker:{b}"], tmp_path / "rdata", from_data=data)

    def hand(d: Path) -> float:
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForSequenceClassification.from_pretrained(d).eval()
        losses = []
        for r in rows:
            cands = [*r["pos"], *r["neg"]]
            with torch.no_grad():
                enc = tok([r["query"]] * len(cands), cands, padding=True, truncation=True,
                          max_length=128, return_tensors="pt")
                s = model(**enc).logits.view(-1).double().numpy()
            losses.append(math.log(np.exp(s).sum()) - s[0])
        return float(np.mean(losses))

    want = [hand(a), hand(b)]
    assert res.losses == pytest.approx(want, abs=1e-4)
    z = np.exp(-np.array(want) / 0.01)
    assert res.weights == pytest.approx(list(z / z.sum()), abs=1e-3)
    HFReranker(tmp_path / "rdata", device="cpu").score_pairs(pairs)


# -- the command ------------------------------------------------------------------------------
def test_merge_cli(cli: Callable[..., CliResult], pair: tuple[Path, Path],
                   tmp_path: Path) -> None:
    a, b = pair
    env = {"EMBEDARENA_HOME": str(tmp_path / "home")}
    res = cli("merge", "--help", env=env)
    assert res.code == 0 and "Example:" in res.stdout
    res = cli("merge", a, b, "--weights", "0.25,0.75", "--out", tmp_path / "mix", env=env)
    assert res.code == 0, res.stderr
    assert "0.2500" in res.stdout and "0.7500" in res.stdout and "hf:" in res.stdout
    for args, says in (((a, b, "--weights", "0.5,0.6"), "sums to 1.1"),
                       ((a, b, "--weights", "0.5,x"), "'x' is not a number"),
                       ((a, b), "give --weights"),
                       ((a, b, "--weights", "0.5,0.5", "--temperature", "2"),
                        "only apply with --from-data")):
        res = cli("merge", *args, "--out", tmp_path / "bad", env=env)
        assert res.code == 2 and says in res.stderr and "Traceback" not in res.stderr, \
            res.stderr
    ex = _examples(tmp_path)
    res = cli("merge", a, b, "--from-data", ex, "--neg-number", "3", "--device", "cpu",
              "--max-length", "16", "--out", tmp_path / "data", env=env)
    assert res.code == 0, res.stderr
    assert "loss" in res.stdout and (tmp_path / "data" / MERGE_META).is_file()


# -- experiment entries -----------------------------------------------------------------------
def _experiment(models: list[object], tmp_path: Path) -> object:
    import embedarena as ea

    return ea.Experiment.model_validate(
        {"name": "m", "models": models, "out": str(tmp_path / "out")},
        context={"base_dir": tmp_path})


def test_merge_entries_are_checked_before_any_work(pair: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    a, b = pair
    tiny_a, tiny_b = {"name": "ta", "type": "hf", "path": str(a)}, \
        {"name": "tb", "type": "hf", "path": str(b)}
    exp = _experiment([tiny_a, tiny_b, {"name": "mix", "merge": {
        "models": ["ta", "tb"], "weights": [0.5, 0.5]}}], tmp_path)
    assert exp.model_names == ["ta", "tb", "mix"]  # type: ignore[attr-defined]
    assert exp.model("mix").depends_on() == ["ta", "tb"]  # type: ignore[attr-defined]
    # an inline parent becomes an entry of its own, so the table shows it
    exp = _experiment([tiny_a, {"merge": {"models": ["ta", f"hf:{b}"],
                                          "weights": [0.5, 0.5]}}], tmp_path)
    assert exp.model_names == ["ta", "b", "ta+b-merged"]  # type: ignore[attr-defined]
    assert exp.added == [("b", "merge parent", "ta+b-merged")]  # type: ignore[attr-defined]
    for models, says in (
            ([tiny_a, {"name": "x", "merge": {"models": ["ta", "nope"],
                                               "weights": [0.5, 0.5]}}], "nope"),
            ([tiny_a, "bm25", {"name": "x", "merge": {"models": ["ta", "bm25"],
                                                      "weights": [0.5, 0.5]}}],
             "a bm25 entry"),
            ([tiny_a, tiny_b, {"name": "x", "merge": {"models": ["ta", "tb"],
                                                      "weights": [0.5, 0.6]}}], "sums to 1.1"),
            ([tiny_a, tiny_b, {"name": "x", "merge": {"models": ["ta", "tb"]}}],
             "merge.weights"),
            ([tiny_a, tiny_b, {"name": "x", "merge": {"models": ["ta", "tb"],
                                                      "weights": [0.5, 0.5],
                                                      "temperature": 2}}], "from_data"),
            ([tiny_a, tiny_b, {"name": "x", "merge": {"models": ["ta", "tb"],
                                                      "from_data": "missing.jsonl"}}],
             "does not exist"),
            ([tiny_a, {"name": "x", "merge": {"models": ["ta", "y"], "weights": [0.5, 0.5]}},
              {"name": "y", "merge": {"models": ["ta", "x"], "weights": [0.5, 0.5]}}],
             "circle"),
            ([tiny_a, tiny_b, {"name": "x", "poolng": "cls", "merge": {
                "models": ["ta", "tb"], "weights": [0.5, 0.5]}}], "poolng")):
        with pytest.raises((ConfigError, ValueError), match=says):
            _experiment(models, tmp_path)


def test_materialize_merges_once_and_keys_on_inputs(pair: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    from embedarena.embedders.hf import HFSpec
    from embedarena.specs import parse_spec

    a, b = pair
    parents = {"ta": HFSpec(name="ta", path=str(a)), "tb": HFSpec(name="tb", path=str(b))}

    def entry(**merge: object) -> object:
        return parse_spec({"name": "mix", "batch_size": 8,
                           "merge": {"models": ["ta", "tb"], **merge}})

    notes: list[str] = []
    first = entry(weights=[0.5, 0.5]).materialize(  # type: ignore[attr-defined]
        tmp_path, log=notes.append, resolve=parents.__getitem__)
    assert isinstance(first, HFSpec) and first.batch_size == 8 and first.name == "mix"
    model = Path(first.path)
    assert model.parent.parent == tmp_path / "merge" and (model.parent / ".complete").is_file()
    stamp = (model / "model.safetensors").stat().st_mtime_ns
    again = entry(weights=[0.5, 0.5]).materialize(  # type: ignore[attr-defined]
        tmp_path, log=notes.append, resolve=parents.__getitem__)
    assert again.path == first.path and (model / "model.safetensors").stat().st_mtime_ns == stamp
    assert any("reusing the merged model" in n for n in notes)
    other = entry(weights=[0.25, 0.75]).materialize(  # type: ignore[attr-defined]
        tmp_path, resolve=parents.__getitem__)
    assert other.path != first.path
    with pytest.raises(ConfigError, match="only an experiment run can resolve"):
        entry(weights=[0.5, 0.5]).materialize(tmp_path)  # type: ignore[attr-defined]


def test_a_from_data_entry_is_keyed_by_the_examples(pair: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """`merge: {from_data: ...}` computes the weights once; new examples (same file name)
    are a new merge, the same ones are reused."""
    from embedarena.embedders.hf import HFSpec
    from embedarena.specs import parse_spec

    a, b = pair
    ex = _examples(tmp_path)
    entry = parse_spec({"name": "mix", "device": "cpu", "merge": {
        "models": [f"hf:{a}", f"hf:{b}"], "from_data": "examples.jsonl", "neg_number": 3,
        "temperature": 0.05, "loss_temperature": 0.05}}, context={"base_dir": tmp_path})
    first = entry.materialize(tmp_path / "out")  # type: ignore[attr-defined]
    assert isinstance(first, HFSpec) and first.device == "cpu"
    plan = json.loads((Path(first.path).parent / "plan.json").read_text(encoding="utf-8"))
    rows = [json.loads(ln) for ln in ex.read_text(encoding="utf-8").splitlines()]
    want = [_hand_infonce(d, rows, 0.05) for d in (a, b)]
    assert plan["losses"] == pytest.approx(want, abs=1e-4)
    z = np.exp(-np.array(want) / 0.05)
    assert plan["weights"] == pytest.approx(list(z / z.sum()), abs=1e-4)
    notes: list[str] = []
    again = entry.materialize(tmp_path / "out", log=notes.append)  # type: ignore[attr-defined]
    assert again.path == first.path and any("reusing" in n for n in notes)
    _examples(tmp_path, n_neg=2)  # other examples under the same name
    other = entry.materialize(tmp_path / "out")  # type: ignore[attr-defined]
    assert other.path != first.path


def test_a_reranker_merge_serves_a_two_stage_row(tmp_path: Path) -> None:
    """`reranker: {merge: ...}` of a two-stage row (the YAML form): the parents are reranker
    specs (`reranker:DIR` strings are specs, not entry names, so no experiment is needed to
    resolve them), and the row's reranker becomes the `reranker` spec of the merged model."""
    from embedarena.embedders.reranker import RerankerSpec
    from embedarena.experiment import parse_model_entry

    a = make_tiny_reranker(tmp_path / "ra", seed=0)
    b = make_tiny_reranker(tmp_path / "rb", seed=1)
    two = parse_model_entry({"name": "bm25+mix", "retriever": "bm25", "reranker": {
        "name": "rr-mix", "merge": {
            "models": [f"reranker:{a}", {"type": "reranker", "path": str(b)}],
            "weights": [0.5, 0.5]}}})
    done = two.materialize(tmp_path)  # type: ignore[attr-defined]
    assert isinstance(done.reranker, RerankerSpec) and done.reranker.name == "rr-mix"
    got = _tensors(Path(done.reranker.path))
    want = {k: (v + _tensors(b)[k]) / 2 for k, v in _tensors(a).items()}
    assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(ConfigError, match="not entry names: rr"):
        parse_model_entry({"name": "x", "retriever": "bm25", "reranker": {"merge": {
            "models": [f"reranker:{a}", "rr"], "weights": [0.5, 0.5]}}})

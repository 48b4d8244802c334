"""The reranker adapter: scores equal a plain transformers forward pass (and sentence-
transformers' CrossEncoder), length-sorted batches keep input order, the fingerprint covers
what changes a score, and the score cache never re-scores a pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embedarena.embedders.cache import CachedReranker  # noqa: E402
from embedarena.embedders.reranker import (  # noqa: E402
    HFReranker,
    RerankerSpec,
    create_reranker,
    normalized_scores,
)
from embedarena.errors import ConfigError, EmbedderError  # noqa: E402
from embedarena.experiment import parse_model_entry  # noqa: E402

PAIRS = [("甲状腺结节怎么办", "甲状腺结节"), ("what is the", "the a is of what"),
         ("高血压", "糖尿病和高血压都是慢性病，需要长期管理"), ("a", "b"),
         ("胆管炎的症状", "右上腹痛发烧黄疸是胆管炎的典型表现")]


def _plain_forward(model_dir: Path, pairs: list[tuple[str, str]], max_length: int = 512
                   ) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        enc = tok([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                  max_length=max_length, return_tensors="pt")
        return model(**enc).logits.view(-1).float().numpy()


def test_scores_equal_a_plain_forward_pass(tiny_reranker_dir: Path) -> None:
    rr = HFReranker(tiny_reranker_dir, batch_size=2)
    want = _plain_forward(tiny_reranker_dir, PAIRS)
    got = rr.score_pairs(PAIRS)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert rr.batches_run == 3  # 5 pairs in batches of 2, sorted by length
    assert rr.compute_score(list(PAIRS[0])) == pytest.approx(float(want[0]), abs=1e-5)
    probs = rr.compute_score([list(p) for p in PAIRS], normalize=True)
    assert isinstance(probs, list)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-want)), atol=1e-5)
    one_by_one = np.array([HFReranker(tiny_reranker_dir).score_pairs([p])[0] for p in PAIRS])
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)  # padding changes nothing


def test_sentence_transformers_cross_encoder_agrees(tiny_reranker_dir: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    ce = st.CrossEncoder(str(tiny_reranker_dir), device="cpu",
                         activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(ce.predict(PAIRS, batch_size=2),
                               HFReranker(tiny_reranker_dir).score_pairs(PAIRS), atol=1e-5)


def test_spec_inline_aliases_and_sigmoid(tiny_reranker_dir: Path) -> None:
    spec = parse_model_entry(f"reranker:{tiny_reranker_dir}")
    assert isinstance(spec, RerankerSpec) and spec.name == tiny_reranker_dir.name
    flag = parse_model_entry({"type": "reranker", "path": str(tiny_reranker_dir),
                              "use_fp16": False, "max_len": 64, "normalize": "sigmoid"})
    assert isinstance(flag, RerankerSpec) and (flag.fp16, flag.max_length) == (False, 64)
    rr = create_reranker(flag)
    raw = rr.score_pairs(PAIRS)
    np.testing.assert_allclose(normalized_scores(rr, PAIRS), 1 / (1 + np.exp(-raw)), atol=1e-6)
    with pytest.raises(ConfigError, match="normalize"):
        parse_model_entry({"type": "reranker", "path": "x", "normalize": "softmax"})


def test_fingerprint_covers_what_changes_a_score(tiny_reranker_dir: Path,
                                                 tmp_path: Path) -> None:
    from tests.conftest import make_tiny_reranker

    base = HFReranker(tiny_reranker_dir).fingerprint
    assert base.startswith("reranker:")
    assert HFReranker(tiny_reranker_dir, batch_size=1, device="cpu").fingerprint == base
    assert HFReranker(tiny_reranker_dir, max_length=16).fingerprint != base
    assert HFReranker(tiny_reranker_dir, normalize="sigmoid").fingerprint != base
    other = make_tiny_reranker(tmp_path / "rr2", seed=1)
    assert HFReranker(other).fingerprint != base


def test_an_encoder_dir_is_not_a_reranker(tiny_bert_dir: Path) -> None:
    with pytest.raises(EmbedderError, match="not a cross-encoder with one logit.*train reranker"):
        HFReranker(tiny_bert_dir)


def test_cache_never_rescores_a_pair(tiny_reranker_dir: Path, tmp_path: Path) -> None:
    rr = CachedReranker(HFReranker(tiny_reranker_dir), cache_dir=tmp_path)
    first = rr.score_pairs(PAIRS[:3])
    assert rr.stats == {"hits": 0, "misses": 3, "inner_calls": 1}
    again = CachedReranker(HFReranker(tiny_reranker_dir), cache_dir=tmp_path)
    both = again.score_pairs([*PAIRS[:3], PAIRS[3], PAIRS[3]])
    assert again.stats == {"hits": 3, "misses": 1, "inner_calls": 1}  # a repeated pair: once
    np.testing.assert_allclose(both[:3], first, atol=0)
    assert both[3] == both[4]
    assert again.db_path.parent.parent == tmp_path and again.db_path.is_file()
    assert again.compute_score(list(PAIRS[0])) == pytest.approx(float(first[0]))
    assert create_reranker(f"reranker:{tiny_reranker_dir}").fingerprint == again.fingerprint

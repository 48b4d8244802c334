"""Vocabulary check and extension: is the model blind to the data's script?

An English WordPiece model maps most Chinese characters to `[UNK]` (all-MiniLM-L6-v2 does so
for ~84% of Chinese ICD label tokens), so every such text looks alike to it and no amount of
fine-tuning helps. `vocab_report` measures the share of tokens that become unknown and names
the text pieces behind them; `extend_vocab` adds those pieces as new tokens and initialises
their embeddings from the pieces' known subwords, or from the embedding mean when there are
none, so training can learn them.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Above this share of unknown tokens the CLI warns that the model cannot read the data.
UNK_WARN_SHARE = 0.05


@dataclass
class VocabReport:
    texts: int = 0
    tokens: int = 0
    unknown: int = 0
    #: The text pieces (a character for CJK, else a word) that became `[UNK]`, with counts.
    pieces: Counter[str] = field(default_factory=Counter)

    @property
    def share(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0

    @property
    def blind(self) -> bool:
        return self.share > UNK_WARN_SHARE

    def summary(self, top: int = 10) -> str:
        head = (f"{self.unknown}/{self.tokens} tokens of {self.texts} texts are unknown to the "
                f"tokenizer ({self.share:.1%})")
        if self.pieces:
            common = ", ".join(f"{p}×{n}" for p, n in self.pieces.most_common(top))
            head += f"; most frequent: {common}"
        return head


def vocab_report(tokenizer: Any, texts: Iterable[str], batch_size: int = 256,
                 limit: int | None = 20000) -> VocabReport:
    """Share of the texts' tokens that `tokenizer` maps to its unknown token.

    Needs a fast tokenizer (offsets tell which text each `[UNK]` stands for); `limit` caps how
    many texts are read, since a sample of the training data answers the question.
    """
    unk_id = getattr(tokenizer, "unk_token_id", None)
    report = VocabReport()
    if unk_id is None:
        return report
    batch: list[str] = []

    def flush() -> None:
        enc = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True,
                        truncation=False)
        for text, ids, offs in zip(batch, enc["input_ids"], enc["offset_mapping"]):
            report.tokens += len(ids)
            for tid, (a, b) in zip(ids, offs):
                if tid == unk_id:
                    report.unknown += 1
                    piece = text[a:b].strip()
                    if piece:
                        report.pieces[piece] += 1
        batch.clear()

    for t in texts:
        if limit is not None and report.texts >= limit:
            break
        report.texts += 1
        batch.append(t)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report


def _is_cjk(ch: str) -> bool:
    return "CJK" in unicodedata.name(ch, "") or "HANGUL" in unicodedata.name(ch, "") \
        or "HIRAGANA" in unicodedata.name(ch, "") or "KATAKANA" in unicodedata.name(ch, "")


def new_tokens_for(report: VocabReport, min_count: int = 1,
                   max_new: int | None = None) -> list[str]:
    """The unknown pieces worth adding: CJK pieces split into characters (BERT tokenizes CJK
    one character at a time), most frequent first."""
    counts: Counter[str] = Counter()
    for piece, n in report.pieces.items():
        if all(_is_cjk(c) for c in piece):
            for c in piece:
                counts[c] += n
        else:
            counts[piece] += n
    out = [p for p, n in counts.most_common() if n >= min_count]
    return out[:max_new] if max_new is not None else out


@dataclass
class ExtendResult:
    added: list[str]
    from_subwords: int
    from_mean: int
    vocab_before: int
    vocab_after: int


def extend_vocab(model: Any, tokenizer: Any, tokens: Sequence[str],
                 seed: int = 0) -> ExtendResult:
    """Add `tokens` to the tokenizer, resize the model's input embeddings and initialise them.

    A new token that the old tokenizer splits into known subwords starts at the mean of those
    subwords' embeddings (it keeps their meaning); one that was wholly unknown starts at the
XX
    but in-distribution (a zero or random-scale row would dominate mean pooling).
    """
    import torch
    from transformers import AddedToken

    before = len(tokenizer)
    unk = tokenizer.unk_token_id
    init_ids: list[list[int]] = []
    fresh: list[str] = []
    vocab = tokenizer.get_vocab()
    for t in tokens:
        if t in vocab or t.lower() in vocab:
            continue
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        fresh.append(t)
        init_ids.append([i for i in ids if i != unk])
    if not fresh:
        return ExtendResult([], 0, 0, before, before)
    added = tokenizer.add_tokens([AddedToken(t, single_word=not all(_is_cjk(c) for c in t),
                                             normalized=True) for t in fresh])
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(seed)
    sub = mean = 0
    with torch.no_grad():
        old = emb[:before].float()
        mu, sd = old.mean(0), old.std(0)
        for t, ids in zip(fresh, init_ids):
            row = tokenizer.convert_tokens_to_ids(t)
            if ids:
                vec = old[ids].mean(0)
                sub += 1
            else:
                noise = torch.randn(mu.shape, generator=gen) * sd.cpu()
                vec = mu + noise.to(mu.device)
                mean += 1
            emb[row] = vec.to(emb.dtype)
    return ExtendResult(fresh[:added], sub, mean, before, len(tokenizer))

"""The sentence-transformers dir format: what training writes, the `hf` reader reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedarena.embedders.st_format import read_layout, write_st_files
from embedarena.errors import EmbedderError


@pytest.mark.parametrize(("pooling", "normalize", "max_len"), [("cls", True, 256),
                                                              ("mean", False, 64)])
def test_write_then_read_round_trips(tmp_path: Path, pooling: str, normalize: bool,
                                     max_len: int) -> None:
    write_st_files(tmp_path, 32, pooling, normalize, max_len, query_instruction="查询：")
    layout = read_layout(tmp_path)
    assert layout.is_sentence_transformers
    assert (layout.pooling, layout.normalize, layout.max_seq_length) == (pooling, normalize,
                                                                          max_len)
    assert layout.transformer_dir == tmp_path and layout.dense == []
    assert layout.module_dirs == [tmp_path / "1_Pooling"]
    st_cfg = json.loads((tmp_path / "config_sentence_transformers.json").read_text("utf-8"))
    assert st_cfg["prompts"] == {"query": "查询：", "document": ""}


def test_plain_hf_dir_has_no_st_layout(tmp_path: Path) -> None:
    layout = read_layout(tmp_path)
    assert not layout.is_sentence_transformers
    assert (layout.pooling, layout.normalize, layout.max_seq_length) == (None, None, None)


def test_writer_refuses_what_the_reader_would_not_know(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cls or mean"):
        write_st_files(tmp_path, 32, "max", True, 128)


def test_reader_names_the_broken_file(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(EmbedderError, match="modules.json"):
        read_layout(tmp_path)

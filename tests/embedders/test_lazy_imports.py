"""Heavy libraries load only when a model needs them (so `embedarena --help` stays fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "openai", "langchain_core", "tiktoken")

SCRIPT = """
import json, sys
import embedarena.embedders as e
from embedarena.embedders.registry import embedder_types
from embedarena.experiment import parse_model_entry as parse_model_spec
stages = {"import": [m for m in HEAVY if m in sys.modules]}
for raw in ["hf:/x/bge", "minilm", "azure:text-embedding-3-large@256", "openai:m",
            "bm25", "langchain:a.b:c", {"hybrid": ["bm25", "minilm"]}]:
    parse_model_spec(raw)
stages["types"] = embedder_types()
stages["parse"] = [m for m in HEAVY if m in sys.modules]
emb = e.create_embedder({"type": "hf", "path": TINY})
emb.dim, emb.fingerprint
stages["hf_created"] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(stages))
"""


def test_no_heavy_imports_until_needed(tiny_bert_dir: Path) -> None:
    code = f"HEAVY = {HEAVY!r}\nTINY = {str(tiny_bert_dir)!r}\n" + SCRIPT
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    stages = json.loads(res.stdout.strip().splitlines()[-1])
    assert stages["import"] == []
    assert stages["parse"] == []
    assert {"hf", "azure_openai", "openai", "langchain"} <= set(stages["types"])
    # creating an hf embedder and reading dim/fingerprint reads files, it loads no model
    assert stages["hf_created"] == []


@pytest.mark.parametrize(("module", "raw", "extra"), [
    ("openai", {"type": "azure_openai", "deployment": "d", "azure_endpoint": "http://x"},
     "openai"),
    ("langchain_core", {"type": "langchain", "factory": "m:f"}, "langchain"),
])
def test_missing_extras_name_the_install_command(module: str, raw: dict[str, object],
                                                 extra: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from embedarena.embedders.registry import create_embedder
    from embedarena.errors import MissingExtraError

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    if module == "langchain_core":
        from embedarena.embedders import langchain as lc_mod

        monkeypatch.setattr(lc_mod, "_BRIDGE", None)
        with pytest.raises(MissingExtraError, match=rf"pip install 'embedarena\[{extra}\]'"):
            lc_mod.as_langchain(object())  # type: ignore[arg-type]
        return
    with pytest.raises(MissingExtraError, match=rf"pip install 'embedarena\[{extra}\]'"):
        create_embedder(raw)

"""Model specs: inline forms, per-type validation, secrets refused, the registry."""

from __future__ import annotations

from typing import Literal

import pytest

from embedarena import specs
from embedarena.embedders import base, registry
from embedarena.embedders.azure_openai import AzureOpenAISpec, OpenAISpec
from embedarena.embedders.base import EmbedderBase, EmbedderSpec, register_embedder
from embedarena.embedders.hf import HFSpec
from embedarena.embedders.langchain import LangChainSpec
from embedarena.embedders.registry import create_embedder
from embedarena.errors import ConfigError
from embedarena.evaluation.rows import row_types
from embedarena.experiment import parse_model_entry as parse_model_spec
from embedarena.indexer.lexical import BM25Spec
from embedarena.specs import ModelSpec


@pytest.mark.parametrize(("inline", "cls", "expected"), [
    ("hf:/models/bge-large-zh-v1.5", HFSpec,
     {"name": "bge-large-zh-v1.5", "path": "/models/bge-large-zh-v1.5"}),
    ("hf:./out/acge-ft/", HFSpec, {"name": "acge-ft", "path": "./out/acge-ft/"}),
    ("hf:/runs/bge-ft/checkpoint-1000", HFSpec, {"name": "bge-ft-checkpoint-1000"}),
    ("minilm", HFSpec, {"name": "minilm", "path": "minilm"}),
    ("azure:text-embedding-3-large", AzureOpenAISpec,
     {"name": "text-embedding-3-large", "deployment": "text-embedding-3-large",
      "dimensions": None}),
    ("azure:text-embedding-3-large@1024", AzureOpenAISpec,
     {"name": "text-embedding-3-large@1024", "dimensions": 1024}),
    ("openai:text-embedding-3-small", OpenAISpec,
     {"name": "text-embedding-3-small", "model": "text-embedding-3-small"}),
    ("bm25", BM25Spec, {"name": "bm25", "analyzer": "standard"}),
    ("bm25:smartcn", BM25Spec, {"name": "bm25-smartcn", "analyzer": "smartcn"}),
    ("langchain:langchain_core.embeddings:DeterministicFakeEmbedding", LangChainSpec,
     {"name": "DeterministicFakeEmbedding"}),
])
def test_inline_forms(inline: str, cls: type[ModelSpec], expected: dict[str, object]) -> None:
    spec = parse_model_spec(inline)
    assert type(spec) is cls
    for k, v in expected.items():
        assert getattr(spec, k) == v, k


def test_dict_form_defaults_and_flagembedding_aliases() -> None:
    spec = parse_model_spec({"type": "hf", "path": "/m/bge", "pooling_method": "mean",
                             "normalize_embeddings": False, "use_fp16": False,
                             "query_instruction_for_retrieval": "为这个句子生成表示："})
    assert isinstance(spec, HFSpec)
    assert (spec.name, spec.pooling, spec.normalize, spec.fp16) == ("bge", "mean", False, False)
    assert spec.batch_size == 32 and spec.device == "auto"


def test_explicit_name_wins() -> None:
    assert parse_model_spec({"name": "bge 微调", "type": "hf", "path": "/x/y"}).name == "bge 微调"


@pytest.mark.parametrize("raw", [
    "hf:/m/bge", "minilm", "azure:text-embedding-3-large@256", "bm25:ik_smart",
    {"name": "x", "type": "hf", "path": "/m", "pooling": "cls", "max_length": 64,
     "query_instruction_for_retrieval": "q: "},
    {"type": "openai", "model": "bge-m3", "base_url": "http://127.0.0.1:8000/v1"},
    {"type": "langchain", "factory": "m:f", "kwargs": {"size": 8}, "revision": "2"},
])
def test_public_dict_round_trips(raw: object) -> None:
    spec = parse_model_spec(raw)  # type: ignore[arg-type]
    again = parse_model_spec(spec.public_dict())
    assert again == spec
    assert again.public_dict() == spec.public_dict()


def test_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_model_spec({"name": "bge", "type": "hf", "path": "/m", "poolng": "cls"})
    msg = str(ei.value)
    assert "'poolng'" in msg and "model 'bge'" in msg
    for allowed in ("pooling", "pooling_method", "normalize", "max_length",
                    "query_instruction_for_retrieval", "batch_size", "device"):
        assert allowed in msg


def test_azure_unknown_key_lists_azure_keys() -> None:
    with pytest.raises(ConfigError, match="allowed: .*api_version.*deployment"):
        parse_model_spec({"type": "azure_openai", "deployment": "d", "pooling": "cls"})


@pytest.mark.parametrize("field", ["api_key", "openai_api_key", "key", "Azure_API_Key"])
def test_key_fields_are_refused(field: str) -> None:
    secret = "sk-THIS-IS-A-SECRET-123"
    with pytest.raises(ConfigError) as ei:
        parse_model_spec({"type": "azure_openai", "deployment": "d", field: secret})
    msg = str(ei.value)
    assert "environment" in msg and "AZURE_OPENAI_API_KEY" in msg
    assert secret not in msg


def test_key_nested_in_langchain_kwargs_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'kwargs\.openai_api_key' looks like a secret"):
        parse_model_spec({"type": "langchain", "factory": "m:f",
                          "kwargs": {"openai_api_key": "x"}})


def test_api_key_env_must_be_a_variable_name() -> None:
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        parse_model_spec({"type": "openai", "model": "m", "api_key_env": "sk-abc/def"})


def test_dimensions_rules() -> None:
    with pytest.raises(ConfigError, match="only supported by text-embedding-3"):
        parse_model_spec("azure:text-embedding-ada-002@512")
    # A deployment with a custom name: `model` says what is behind it.
    with pytest.raises(ConfigError, match="only supported by text-embedding-3"):
        parse_model_spec({"type": "azure_openai", "deployment": "emb", "dimensions": 256,
                          "model": "text-embedding-ada-002"})
    with pytest.raises(ConfigError, match="at most 1536"):
        parse_model_spec("openai:text-embedding-3-small@2048")
    with pytest.raises(ConfigError, match="number of dimensions"):
        parse_model_spec("azure:text-embedding-3-large@big")
    assert parse_model_spec({"type": "azure_openai", "deployment": "emb",
                             "dimensions": 256}).dimensions == 256  # unknown model: allowed


@pytest.mark.parametrize(("raw", "pattern"), [
    ("nonsense", "inline forms"),
    ("foo:bar", "unknown model prefix 'foo'"),
    ({"name": "x", "path": "/m"}, "has no 'type'; one of: .*azure_openai.*bm25.*hf"),
    ({"type": "sbert", "path": "/m"}, "unknown model type 'sbert'; known types: .*hf"),
    ({"type": "hf", "path": "/m", "pooling": "max"}, "pooling"),
    ({"type": "hf", "path": "/m", "device": "tpu"}, "device is one of"),
    ({"type": "hf"}, "path"),
    ({"type": "langchain", "factory": "no_colon"}, "package.module:callable"),
    (42, "a string"),
])
def test_invalid_specs(raw: object, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_model_spec(raw)  # type: ignore[arg-type]


def test_bm25_is_a_valid_type_but_has_no_embedder() -> None:
    assert "bm25" in row_types() and "bm25" not in registry.embedder_types()
    spec = parse_model_spec({"name": "lex", "type": "bm25", "analyzer": "smartcn"})
    with pytest.raises(ConfigError, match="cannot be used here; usable types: .*hf"):
        create_embedder(spec)  # type: ignore[arg-type]


def test_registry_builtins_and_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"hf", "azure_openai", "openai", "langchain"} <= set(registry.embedder_types())
    for table in ("_KINDS", "_PREFIXES", "_NAMES", "_KEYS"):
        monkeypatch.setattr(specs, table, dict(getattr(specs, table)))
    monkeypatch.setattr(base, "_FACTORIES", dict(base._FACTORIES))

    class ToySpec(EmbedderSpec):
        type: Literal["toy"] = "toy"
        size: int = 3

        @classmethod
        def from_inline(cls, rest: str) -> dict[str, object]:
            return {"size": int(rest), "name": f"toy{rest}"}

    @register_embedder(ToySpec, prefixes=("toy",), forms=("toy:<size>",))
    class Toy(EmbedderBase):
        def __init__(self, spec: ToySpec) -> None:
            self.name, self.size = spec.name, spec.size

        @classmethod
        def from_spec(cls, spec: EmbedderSpec) -> Toy:
            assert isinstance(spec, ToySpec)
            return cls(spec)

    emb = create_embedder({"name": "t", "type": "toy", "size": 5})
    assert isinstance(emb, Toy) and emb.size == 5
    inline = create_embedder("toy:7")  # the adapter's own inline prefix, no edit elsewhere
    assert isinstance(inline, Toy) and (inline.name, inline.size) == ("toy7", 7)
    assert "toy" in row_types() and "toy:<size>" in specs.inline_forms()
    with pytest.raises(ConfigError, match="already registered"):
        register_embedder(ToySpec)(Toy)

    class OtherHF(EmbedderSpec):
        type: Literal["hf"] = "hf"

    with pytest.raises(ConfigError, match="model type 'hf' is already registered"):
        register_embedder(OtherHF)(Toy)

    class Clash(EmbedderSpec):
        type: Literal["clash"] = "clash"

    with pytest.raises(ConfigError, match="inline prefix 'bm25' is already registered"):
        register_embedder(Clash, prefixes=("bm25",))(Toy)
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        parse_model_spec({"type": "toy", "name": "t", "colour": "red"})


def test_specs_are_frozen() -> None:
    spec = parse_model_spec("hf:/m/bge")
    with pytest.raises(Exception, match="frozen"):
        spec.path = "/other"  # type: ignore[misc]

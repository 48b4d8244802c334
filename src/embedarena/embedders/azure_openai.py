"""`type: azure_openai` and `type: openai`: embeddings from Azure OpenAI deployments, OpenAI, or
any OpenAI-compatible endpoint, through the official `openai` SDK.

Request shaping: at most `batch_size` (≤ 2048) inputs and `max_request_tokens` per request.
Tokens are counted with tiktoken when it and its encoding files are available; otherwise the
UTF-8 byte length is used, a strict upper bound (every BPE token is at least one byte), so
requests can only come out smaller than needed, never too large.

Over-long inputs (more than `max_input_tokens`, 8191 by default): an error naming the text by
default, because silently cutting a text changes what is being benchmarked. `truncate: true`
cuts instead: exactly with tiktoken; otherwise to `max_input_tokens` UTF-8 bytes (always
safe, but a much shorter cut). Without tiktoken a text is refused up front only if it
certainly is too long; borderline ones go to the API, whose "maximum context length" answer
becomes the same clear error.

Retries are the SDK's (`max_retries = max_attempts - 1`): 408/409/429/5xx, timeouts and
connection errors. A 429 waits exactly what `retry-after-ms` / `Retry-After` ask, up to the
SDK's cap (`MAX_RETRY_AFTER_DELAY`, 120 s in openai 3.54; older SDKs had 60 s and backed off
instead of refusing); a longer ask is not retried and stops with "asks to wait longer ...;
try again later" (failing beats a silent long stall).
Other waits are the SDK's jittered exponential backoff (0.5 s doubling, at most 8 s).
A 200 whose body cannot be read (cut off by a proxy, not the embeddings schema, bad base64)
is retried by us on the same attempt budget (0.5 s doubling, at most 8 s) and ends, after the
last attempt, in the same one line ("HTTP 200 with an unreadable body (...) on all N
attempts"). Short answers (49 vectors for 50 inputs), wrong dimensions and NaN are not
retried: they are errors naming the batch (see `embedders.base.embed_batch`).
Every retry is logged as a warning here (the SDK's INFO log, `OPENAI_LOG=info`, also shows
each wait before it starts); exhausted attempts end in one line "HTTP 429 on all N attempts".
401/403 raise `AuthError` naming the endpoint and where the key came from; 404 names the
missing deployment/model. The key never appears in messages or logs: it is not stored on the
embedder, messages are built from our own words, and server text goes through
`secrets.scrub`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from embedarena.embedders.base import (
    EmbedderBase,
    EmbedderSpec,
    check_output,
    register_embedder,
    settings_fingerprint,
)
from embedarena.errors import AuthError, ConfigError, EmbedderError, MissingExtraError
from embedarena.secrets import check_env_var_name, scrub

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


# -- keys ---------------------------------------------------------------------------------------
def resolve_api_key(env_var: str, key_file: str | None, required: bool = True) -> str | None:
    """The API key from `key_file` (must be 0600) or the environment variable `env_var`."""
    if key_file:
        from embedarena.settings import read_secret_file

        key = read_secret_file(Path(key_file), "API key")
        if not key:
            raise ConfigError(f"API key file {key_file} is empty")
        return key
    key = os.environ.get(env_var, "").strip()
    if not key and required:
        raise ConfigError(f"no API key: set the environment variable {env_var}, or point "
                          "api_key_file at a file only you can read (chmod 600)")
    return key or None


# -- token counting -----------------------------------------------------------------------------
TokenCounter = Callable[[str], int]


@functools.lru_cache(maxsize=8)
def _tiktoken_encoding(model: str) -> Any:
    """The tiktoken encoding for `model`, or None when tiktoken or its data is unavailable
    (tiktoken downloads encoding files on first use; offline machines must still work)."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_for_model(model)
    except KeyError:
        pass
    except Exception as e:  # noqa: BLE001 - network/file errors of tiktoken's loader
        log.debug("tiktoken unavailable for %s: %s", model, type(e).__name__)
        return None
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception as e:  # noqa: BLE001
        log.debug("tiktoken cl100k_base unavailable: %s", type(e).__name__)
        return None


def token_tools(model: str) -> tuple[TokenCounter, Callable[[str, int], str], bool]:
    """(count, truncate, exact) for a model: tiktoken if usable, else UTF-8 byte bounds."""
    enc = _tiktoken_encoding(model)
    if enc is not None:
        def count(text: str) -> int:
            return len(enc.encode(text, disallowed_special=()))

        def cut(text: str, limit: int) -> str:
            return str(enc.decode(enc.encode(text, disallowed_special=())[:limit]))

        return count, cut, True

    def count_bytes(text: str) -> int:
        return len(text.encode("utf-8"))

    def cut_bytes(text: str, limit: int) -> str:
        return text.encode("utf-8")[:limit].decode("utf-8", "ignore")

    return count_bytes, cut_bytes, False


# -- settings ---------------------------------------------------------------------------------
#: Native vector sizes of the OpenAI embedding models.
OPENAI_MODEL_DIMS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}


class _OpenAISettings(EmbedderSpec):
    """Settings shared by `azure_openai` and `openai` (request shaping, attempts, timeout)."""

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

    KNOWN_DIMS: ClassVar[dict[str, int]] = OPENAI_MODEL_DIMS

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        return check_env_var_name(v, "api_key_env")

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

    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        deployment, dims = _split_dims(rest)
        return {"deployment": deployment, **dims}

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

    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        model, dims = _split_dims(rest)
        return {"model": model, **dims}

    @model_validator(mode="after")
    def _dims(self) -> OpenAISpec:
        self._check_dimensions()
        return self


def _split_dims(rest: str) -> tuple[str, dict[str, Any]]:
    """`name@1024` → ("name", {"dimensions": 1024}); the part after `@` must be a number."""
    target, at, dims = rest.partition("@")
    if not at:
        return target, {}
    if not dims.isdigit():
        raise ConfigError(f"the part after '@' is the number of dimensions, not '{dims}'")
    return target, {"dimensions": int(dims)}


# -- the embedders ------------------------------------------------------------------------------
class _OpenAIEmbedderBase(EmbedderBase):
    """Shared request shaping, retries and error mapping; subclasses make the client."""

    provider = "OpenAI"
    spec: _OpenAISettings

    def __init__(self, spec: _OpenAISettings) -> None:
        try:
            import openai  # noqa: F401
        except ImportError:
            raise MissingExtraError("openai", "openai") from None
        self.spec = spec
        self.name = spec.name
        self._client: Any = None
        family = spec.model_family()
        self._dim: int | None = spec.dimensions or (OPENAI_MODEL_DIMS.get(family)
                                                     if family else None)
        self.requests_made = 0  # HTTP requests sent, retries included
        #: input tokens of the texts sent in answered requests (each text once, retries not
        #: counted again), counted as `plan_batches` counts them; exact with tiktoken
        self.tokens_sent = 0
        self.tokens_exact = True
        self._attempt = 0  # attempts within the current `_request` (the SDK retries inside it)
        self._last_failure = ""

    # subclass hooks
    @property
    def model_arg(self) -> str:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def _key_hint(self) -> str:
        return (f"the key in {self.spec.api_key_file}" if self.spec.api_key_file
                else f"the key in ${self.spec.api_key_env}")

    def _not_found(self) -> str:
        raise NotImplementedError

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _fingerprint_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- protocol ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:  # unknown model: ask it once
            self._dim = int(self._request(["dimension probe"])[0].shape[0])
        return self._dim

    @property
    def normalized(self) -> bool:
        return bool(self.spec.normalize)

    @property
    def fingerprint(self) -> str:
        """`<provider>:<sha256>` over model identity, endpoint and `dimensions`/normalise; not
        over batching, retries or the key."""
        return settings_fingerprint(self.type_name or "openai", {
            **self._fingerprint_payload(), "dimensions": self.spec.dimensions,
            "normalize": self.spec.normalize, "truncate": self.spec.truncate,
            "max_input_tokens": self.spec.max_input_tokens if self.spec.truncate else None,
        })

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    # -- batching ------------------------------------------------------------------------------
    def plan_batches(self, texts: list[str]) -> list[list[int]]:
        """Indices of `texts` per request, within the input-count and token budgets.

        Also validates (or, with truncate, cuts) over-long inputs in place.
        """
        count, cut, exact = token_tools(self.spec.model_family() or self.model_arg)
        limit = self.spec.max_input_tokens
        self._planned_tokens: dict[int, int] = {}
        batches: list[list[int]] = []
        cur: list[int] = []
        cur_tokens = 0
        for i, text in enumerate(texts):
            n = count(text)
            if n > limit:
                if self.spec.truncate:
                    texts[i] = text = cut(text, limit)
                    n = count(text)
                elif exact:
                    raise EmbedderError(self._too_long(i, text, n, exact=True))
            n = min(n, limit)
            self._planned_tokens[i] = n
            if cur and (len(cur) >= self.spec.batch_size
                        or cur_tokens + n > self.spec.max_request_tokens):
                batches.append(cur)
                cur, cur_tokens = [], 0
            cur.append(i)
            cur_tokens += n
        if cur:
            batches.append(cur)
        return batches

    def _too_long(self, i: int, text: str, n: int | None, exact: bool) -> str:
        preview = text[:40].replace("\n", " ")
        size = f"{n} tokens" if exact and n is not None else "too many tokens"
        return (f"model '{self.name}': text #{i} ('{preview}...') has {size}; the limit is "
                f"{self.spec.max_input_tokens}. Shorten it, or set truncate: true to cut it")

    def _embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The API refuses empty strings; a single space embeds "nothing" and keeps positions.
        work = [t if t.strip() else " " for t in texts]
        out: np.ndarray | None = None
        for batch in self.plan_batches(work):
            try:
                vecs = self._request([work[i] for i in batch])
            except _ContextLength:
                first = batch[0] if len(batch) == 1 else None
                raise EmbedderError(
                    self._too_long(first, work[first], None, exact=False) if first is not None
                    else f"model '{self.name}': {self.endpoint} refused a request because an "
                    f"input is longer than the model's context; set truncate: true to cut "
                    "over-long texts") from None
            self.tokens_sent += sum(self._planned_tokens.get(i, 0) for i in batch)
            self.tokens_exact = self.tokens_exact and token_tools(
                self.spec.model_family() or self.model_arg)[2]
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[batch] = vecs
        assert out is not None
        if self.spec.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms == 0, 1.0, norms)
        return check_output(out, len(texts), self.dim, self.name)

    # -- one request (the SDK retries inside it) ------------------------------------------
    def _scrub(self, text: str) -> str:
        """Server text through the one secret rule, our own key included (APIs echo keys)."""
        try:
            key = resolve_api_key(self.spec.api_key_env, self.spec.api_key_file, required=False)
        except ConfigError:  # the key file changed under us; the shape rules still apply
            key = None
        return scrub(text, known=[key])

    def _client_options(self) -> dict[str, Any]:
        """Arguments both SDK clients take: the SDK's retries for our attempts, the timeout,
        and HTTP hooks that count attempts and make retries visible."""
        import openai

        hooks: dict[str, list[Callable[..., Any]]] = {"request": [self._on_request],
                                                      "response": [self._on_response]}
        return {"max_retries": self.spec.max_attempts - 1, "timeout": self.spec.timeout,
                "http_client": openai.DefaultHttpxClient(event_hooks=hooks)}

    def _on_request(self, request: Any) -> None:
        """Before each HTTP attempt: count it; warn if it is a retry (the SDK only logs at
        INFO, which nobody sees by default)."""
        self.requests_made += 1
        self._attempt += 1
        if self._attempt > 1:
            log.warning("%s at %s: %s on attempt %d of %d; retrying", self.provider,
                        self.endpoint, self._last_failure, self._attempt - 1,
                        self.spec.max_attempts)
        self._last_failure = (f"no answer within {self.spec.timeout:g} s or connection "
                              "failed")  # stays so unless a response arrives

    def _on_response(self, response: Any) -> None:
        self._last_failure = f"HTTP {response.status_code}{_asked_wait(response.headers)}"

    def _client_or_make(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _request(self, inputs: list[str]) -> np.ndarray:
        """One request, retried by the SDK on HTTP errors and by us on an answer we cannot
        read (a 200 whose body was cut off by a proxy, or is not the embeddings schema): both
        draw on the same `max_attempts`."""
        import openai

        client = self._client_or_make()
        kwargs: dict[str, Any] = {"model": self.model_arg, "input": inputs}
        if self.spec.dimensions is not None:
            kwargs["dimensions"] = self.spec.dimensions
        self._attempt = 0
        while True:
            left = self.spec.max_attempts - self._attempt
            sender = client if self._attempt == 0 else client.with_options(max_retries=left - 1)
            try:
                try:
                    resp = sender.embeddings.create(**kwargs)
                except openai.APIResponseValidationError:
                    raise _Unreadable("not the embeddings schema") from None
                except (ValueError, TypeError, AttributeError, KeyError) as e:
                    # create() decodes the JSON, then the base64 vectors, in the SDK's own code;
                    # a cut or malformed body surfaces as any of these
                    raise _Unreadable(_unreadable(e)) from None
                return self._parse(resp, inputs)
            except _Unreadable as e:
                self._last_failure = f"HTTP 200 with an unreadable body ({e})"
                if self._attempt >= self.spec.max_attempts:
                    raise self._gave_up(self._last_failure) from None
                _pause(min(0.5 * 2.0 ** (self._attempt - 1), 8.0))
            except openai.APIStatusError as e:
                raise self._status_error(e) from None
            except openai.APITimeoutError:
                raise self._gave_up(f"no answer within {self.spec.timeout:g} s") from None
            except openai.APIConnectionError as e:
                raise self._gave_up(f"connection failed ({type(e.__cause__).__name__})") \
                    from None

    def _gave_up(self, what: str) -> EmbedderError:
        return EmbedderError(f"{self.provider} at {self.endpoint}: {what} on all "
                             f"{self._attempt} attempts for '{self.model_arg}'; giving up")

    def _status_error(self, e: Any) -> Exception:
        """Our error for the HTTP error the SDK finally raised (after its retries, if any)."""
        status = e.status_code
        if status in (401, 403):
            return AuthError(f"{self.provider} at {self.endpoint} refused {self._key_hint()} "
                             f"(HTTP {status}); check that it is the key of this resource")
        if status == 404:
            return EmbedderError(self._not_found())
        if status == 400 and "context length" in str(e.message).lower():
            return _ContextLength()
        retryable = status in (408, 409, 429) or status >= 500  # what the SDK retries
        if retryable and self._attempt >= self.spec.max_attempts:
            return self._gave_up(f"HTTP {status}")
        if status == 429:  # retryable, yet the SDK stopped early: the ask is beyond its cap
            return EmbedderError(
                f"{self.provider} at {self.endpoint} is rate limiting and asks to wait longer "
                f"than the openai client waits{_asked_wait(e.response.headers)}; try again later")
        return EmbedderError(
            f"{self.provider} at {self.endpoint} rejected the request for '{self.model_arg}' "
            f"(HTTP {status}): {self._scrub(_error_text(e))}")

    def _parse(self, resp: Any, inputs: list[str]) -> np.ndarray:
        import numpy as np

        n = len(inputs)
        raw = getattr(resp, "data", None)
        if not isinstance(raw, list) or not all(
                isinstance(getattr(d, "index", None), int) for d in raw):
            raise _Unreadable("no list of indexed embeddings in it")
        data = sorted(raw, key=lambda d: d.index)
        if [d.index for d in data] != list(range(n)):
            raise EmbedderError(f"{self.provider} at {self.endpoint} returned {len(data)} "
                                f"embeddings for {n} inputs"
                                + ("" if len(data) == n else
                                   f" (indexes {_index_summary([d.index for d in data], n)})"))
        rows = []
        for d in data:
            emb = d.embedding
            try:
                if isinstance(emb, str):
                    rows.append(np.frombuffer(base64.b64decode(emb, validate=True), dtype="<f4"))
                else:
                    rows.append(np.asarray(emb, dtype=np.float32).reshape(-1))
            except (ValueError, TypeError) as e:
                raise _Unreadable(f"embedding {d.index} is not a vector: "
                                  f"{type(e).__name__}") from None
        dims = {len(r) for r in rows}
        if len(dims) != 1:
            raise EmbedderError(f"{self.provider} returned vectors of mixed sizes {dims}")
        got = dims.pop()
        if self._dim is not None and got != self._dim:
            hint = (" (does this deployment support `dimensions`?)"
                    if self.spec.dimensions else "")
            raise EmbedderError(f"model '{self.name}': expected {self._dim}-dim vectors, "
                                f"{self.endpoint} returned {got}{hint}")
        self._dim = got
        out = np.stack(rows).astype(np.float32)
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            preview = inputs[int(bad[0])][:40].replace("\n", " ")
            raise EmbedderError(f"{self.provider} at {self.endpoint} returned NaN or infinite "
                                f"values in {len(bad)} of {n} vectors (first for '{preview}')")
        return out


class _ContextLength(Exception):
    """Internal: the API said an input exceeds the model's context."""


class _Unreadable(Exception):
    """Internal: a 200 answer whose body is not a readable embeddings response (retryable)."""


def _pause(seconds: float) -> None:
    """Wait before retrying an unreadable answer (tests replace this to record the wait)."""
    time.sleep(seconds)


def _unreadable(e: BaseException) -> str:
    """A short, secret-free description of why a body could not be decoded."""
    if isinstance(e, json.JSONDecodeError):
        return f"truncated or invalid JSON at character {e.pos} of {len(e.doc)}"
    if isinstance(e, binascii.Error):
        return "invalid base64 vector"
    return f"not the embeddings schema: {type(e).__name__}"


def _index_summary(got: list[int], n: int) -> str:
    missing = sorted(set(range(n)) - set(got))
    extra = len(got) - len(set(got))
    parts = []
    if missing:
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        parts.append(f"missing {shown}")
    if extra:
        parts.append(f"{extra} repeated")
    return "; ".join(parts) or "out of range"


def _asked_wait(headers: Any) -> str:
    """The server's wait request as sent, e.g. ` (Retry-After: 30)`; parsing is the SDK's."""
    for name in ("retry-after-ms", "Retry-After"):
        value = headers.get(name)
        if value is not None:
            return f" ({name}: {str(value)[:40]})"
    return ""


def _error_text(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(getattr(e, "message", "") or type(e).__name__)[:300]


@register_embedder(AzureOpenAISpec, prefixes=("azure", "azure_openai"),
                   forms=("azure:<deployment>[@dimensions]",))
class AzureOpenAIEmbedder(_OpenAIEmbedderBase):
    """One Azure OpenAI embedding deployment (text-embedding-ada-002, -3-small, -3-large)."""

    provider = "Azure OpenAI"
    spec: AzureOpenAISpec

    def __init__(self, spec: AzureOpenAISpec) -> None:
        super().__init__(spec)
        endpoint = spec.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT", "")
        if not endpoint.strip():
            raise ConfigError(f"model '{spec.name}': no Azure endpoint; set azure_endpoint in "
                              "the model entry or the environment variable AZURE_OPENAI_ENDPOINT")
        self._endpoint = endpoint.strip().rstrip("/")
        resolve_api_key(spec.api_key_env, spec.api_key_file)  # fail now, not mid-run

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> AzureOpenAIEmbedder:
        if not isinstance(spec, AzureOpenAISpec):
            raise ConfigError(f"model '{spec.name}' is not an azure_openai spec")
        return cls(spec)

    @property
    def model_arg(self) -> str:
        return self.spec.deployment

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _not_found(self) -> str:
        return (f"Azure OpenAI deployment '{self.spec.deployment}' was not found at "
                f"{self.endpoint} (HTTP 404); check the deployment name (not the model name) "
                "in the Azure portal, and the endpoint")

    def _make_client(self) -> Any:
        from openai import AzureOpenAI

        return AzureOpenAI(
            azure_endpoint=self.endpoint, api_version=self.spec.api_version,
            api_key=resolve_api_key(self.spec.api_key_env, self.spec.api_key_file),
            **self._client_options())

    def _fingerprint_payload(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint.lower(), "deployment": self.spec.deployment,
                "model": self.spec.model_family() or self.spec.model}


@register_embedder(OpenAISpec, prefixes=("openai",), forms=("openai:<model>[@dimensions]",))
class OpenAIEmbedder(_OpenAIEmbedderBase):
    """OpenAI's API, or any OpenAI-compatible `/v1/embeddings` server given by `base_url`
    (a key is then optional: local servers often need none)."""

    spec: OpenAISpec

    def __init__(self, spec: OpenAISpec) -> None:
        super().__init__(spec)
        self._base_url = (spec.base_url or os.environ.get("OPENAI_BASE_URL", "")
                          or "https://api.openai.com/v1").rstrip("/")
        resolve_api_key(spec.api_key_env, spec.api_key_file, required=self._needs_key)

    @property
    def _needs_key(self) -> bool:
        return self._base_url == "https://api.openai.com/v1"

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> OpenAIEmbedder:
        if not isinstance(spec, OpenAISpec):
            raise ConfigError(f"model '{spec.name}' is not an openai spec")
        return cls(spec)

    @property
    def model_arg(self) -> str:
        return self.spec.model

    @property
    def endpoint(self) -> str:
        return self._base_url

    def _not_found(self) -> str:
        return (f"model '{self.spec.model}' was not found at {self.endpoint} (HTTP 404); "
                "check the model name and base_url")

    def _make_client(self) -> Any:
        from openai import OpenAI

        key = resolve_api_key(self.spec.api_key_env, self.spec.api_key_file,
                              required=self._needs_key)
        return OpenAI(base_url=self.endpoint, api_key=key or "no-key", **self._client_options())

    def _fingerprint_payload(self) -> dict[str, Any]:
        return {"base_url": self.endpoint.lower(), "model": self.spec.model}

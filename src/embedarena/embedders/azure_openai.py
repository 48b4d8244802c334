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

Retries are ours (the SDK's own are turned off with max_retries=0, so behaviour is testable):
429 waits what `retry-after-ms` / `Retry-After` ask, else jittered exponential backoff; 5xx,
timeouts and connection errors back off likewise; `max_attempts` in all. 401/403 raise
`AuthError` naming the endpoint and where the key came from; 404 names the missing
deployment/model. The key never appears in messages or logs: it is not stored on the embedder,
messages are built from our own words, and any server text we quote has it scrubbed.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedarena.embedders.base import (
    EmbedderBase,
    check_output,
    register_embedder,
    settings_fingerprint,
)
from embedarena.embedders.spec import (
    OPENAI_MODEL_DIMS,
    AzureOpenAISpec,
    ModelSpec,
    OpenAISpec,
    _OpenAISettings,
)
from embedarena.errors import AuthError, ConfigError, EmbedderError, MissingExtraError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

#: The longest a server-requested wait is honoured (beyond it, failing is more useful).
MAX_RETRY_AFTER_S = 600.0


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


# -- retries --------------------------------------------------------------------------------------
def retry_after_seconds(headers: Any) -> float | None:
    """What the server asks us to wait: `retry-after-ms` (Azure), else `Retry-After` (seconds
    or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_seconds(attempt: int, initial: float, cap: float,
                    rng: random.Random | None = None) -> float:
    """Equal-jitter exponential backoff: half the step fixed, half random (attempt from 1)."""
    step = min(cap, initial * (2 ** (attempt - 1)))
    r = (rng or random).random()
    return step / 2 + r * step / 2


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
        self.requests_made = 0
        self._rng = random.Random()
        self._sleep: Callable[[float], None] = time.sleep

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
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[batch] = vecs
        assert out is not None
        if self.spec.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms == 0, 1.0, norms)
        return check_output(out, len(texts), self.dim, self.name)

    # -- one request, with retries ---------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """Server text with anything key-like removed (some APIs echo part of the key)."""
        try:
            key = resolve_api_key(self.spec.api_key_env, self.spec.api_key_file, required=False)
        except ConfigError:  # the key file changed under us; the pattern below still applies
            key = None
        if key:
            text = text.replace(key, "***")
        return re.sub(r"\b(sk-[A-Za-z0-9_*-]{4,}|[0-9a-f]{32})\b", "***", text)

    def _client_or_make(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _request(self, inputs: list[str]) -> np.ndarray:
        import openai

        client = self._client_or_make()
        kwargs: dict[str, Any] = {"model": self.model_arg, "input": inputs}
        if self.spec.dimensions is not None:
            kwargs["dimensions"] = self.spec.dimensions
        attempts = self.spec.max_attempts
        for attempt in range(1, attempts + 1):
            self.requests_made += 1
            try:
                resp = client.embeddings.create(**kwargs)
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (401, 403):
                    raise AuthError(
                        f"{self.provider} at {self.endpoint} refused {self._key_hint()} "
                        f"(HTTP {status}); check that it is the key of this resource"
                    ) from None
                if status == 404:
                    raise EmbedderError(self._not_found()) from None
                if status == 400 and "context length" in str(e.message).lower():
                    raise _ContextLength() from None
                if status == 429 or status >= 500 or status == 408:
                    wait = retry_after_seconds(e.response.headers) if status == 429 else None
                    what = f"HTTP {status}"
                else:
                    raise EmbedderError(
                        f"{self.provider} at {self.endpoint} rejected the request for "
                        f"'{self.model_arg}' (HTTP {status}): {self._scrub(_error_text(e))}"
                    ) from None
            except openai.APITimeoutError:
                wait, what = None, f"no answer within {self.spec.timeout:g} s"
            except openai.APIConnectionError as e:
                wait, what = None, f"connection failed ({type(e.__cause__).__name__})"
            else:
                return self._parse(resp, len(inputs))
            if attempt == attempts:
                raise EmbedderError(f"{self.provider} at {self.endpoint}: {what} on all "
                                    f"{attempts} attempts for '{self.model_arg}'; giving up")
            if wait is None:
                wait = backoff_seconds(attempt, self.spec.backoff_initial,
                                       self.spec.backoff_max, self._rng)
            elif wait > MAX_RETRY_AFTER_S:
                raise EmbedderError(f"{self.provider} at {self.endpoint} is rate limiting and "
                                    f"asks to wait {wait:.0f} s; try again later")
            log.warning("%s at %s: %s; retrying in %.1f s (attempt %d of %d)", self.provider,
                        self.endpoint, what, wait, attempt + 1, attempts)
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, resp: Any, n: int) -> np.ndarray:
        import numpy as np

        data = sorted(resp.data, key=lambda d: d.index)
        if [d.index for d in data] != list(range(n)):
            raise EmbedderError(f"{self.provider} at {self.endpoint} returned {len(data)} "
                                f"embeddings for {n} inputs")
        rows = []
        for d in data:
            emb = d.embedding
            if isinstance(emb, str):
                rows.append(np.frombuffer(base64.b64decode(emb), dtype="<f4"))
            else:
                rows.append(np.asarray(emb, dtype=np.float32))
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
        return np.stack(rows).astype(np.float32)


class _ContextLength(Exception):
    """Internal: the API said an input exceeds the model's context."""


def _error_text(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(getattr(e, "message", "") or type(e).__name__)[:300]


@register_embedder("azure_openai")
class AzureOpenAIEmbedder(_OpenAIEmbedderBase):
    """One Azure OpenAI embedding deployment (text-embedding-ada-002, -3-small, -3-large)."""

    spec_class = AzureOpenAISpec
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
    def from_spec(cls, spec: ModelSpec) -> AzureOpenAIEmbedder:
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
            max_retries=0, timeout=self.spec.timeout)

    def _fingerprint_payload(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint.lower(), "deployment": self.spec.deployment,
                "model": self.spec.model_family() or self.spec.model}


@register_embedder("openai")
class OpenAIEmbedder(_OpenAIEmbedderBase):
    """OpenAI's API, or any OpenAI-compatible `/v1/embeddings` server given by `base_url`
    (a key is then optional: local servers often need none)."""

    spec_class = OpenAISpec
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
    def from_spec(cls, spec: ModelSpec) -> OpenAIEmbedder:
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
        return OpenAI(base_url=self.endpoint, api_key=key or "no-key", max_retries=0,
                      timeout=self.spec.timeout)

    def _fingerprint_payload(self) -> dict[str, Any]:
        return {"base_url": self.endpoint.lower(), "model": self.spec.model}

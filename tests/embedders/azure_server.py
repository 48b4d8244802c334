"""A local, real HTTP server that speaks the Azure OpenAI and OpenAI embeddings APIs.

Tests (here and elsewhere in the suite) point the real `openai` SDK, or langchain-openai, at it
instead of mocking the client, so URL building, headers, base64 decoding and error mapping are
all exercised for real. It answers:

* Azure: `POST /openai/deployments/{deployment}/embeddings?api-version=...` with an `api-key`
  header (or `Authorization: Bearer`, as Entra ID tokens are sent);
* OpenAI: `POST /v1/embeddings` with `Authorization: Bearer <key>` and `model` in the body.

Embeddings are deterministic pseudo-vectors (see `fake_embedding`), unit length, honouring
`dimensions` the way text-embedding-3 does (truncate, then re-normalise), in either
`encoding_format`. Failures can be scripted (`fail_next`): error statuses, delays, and 200
answers that are cut short or altered (`truncate`, `mangle`); every request is recorded.

Usage::

    with EmbeddingAPIServer(api_key="k") as srv:
        client = AzureOpenAI(azure_endpoint=srv.url, api_key="k", api_version="2024-02-01")
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

#: Native sizes of the OpenAI embedding models (what a request without `dimensions` returns).
MODEL_DIMS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}
#: Deployments a default server has: deployment name -> model.
DEFAULT_DEPLOYMENTS = {name: name for name in MODEL_DIMS}

AZURE_401 = {"error": {"code": "401", "message": (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource.")}}
AZURE_404 = {"error": {"code": "DeploymentNotFound", "message": (
    "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again.")}}
AZURE_500 = {"error": {"code": "InternalServerError", "message": (
    "The server had an error while processing your request. Sorry about that!")}}
AZURE_503 = {"error": {"code": "ServiceUnavailable", "message": (
    "The service is temporarily unable to process your request. Please try again later.")}}


def azure_429(seconds: float) -> dict[str, Any]:
    return {"error": {"code": "429", "message": (
        "Requests to the Embeddings_Create Operation under Azure OpenAI API version 2024-02-01 "
        "have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry "
        f"after {seconds:g} seconds. Please go here: https://aka.ms/oai/quotaincrease if you "
        "would like to further increase the default rate limit.")}}


def fake_embedding(text: str | list[int], model: str, dimensions: int | None = None,
                   native_dim: int | None = None) -> np.ndarray:
    """The server's vector for `text` under `model`: seeded by a hash, unit length, float32.

    Public so tests can compute the exact expected vectors independently of the client.
    """
    full = native_dim or MODEL_DIMS.get(model, 1536)
    key = text if isinstance(text, str) else json.dumps(text)
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{key}".encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(full)
    if dimensions is not None:
        v = v[:dimensions]
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass
class Failure:
    """One scripted error response. `retry_after` becomes a `Retry-After` header (seconds).

    `status=0` is not an error: the server waits `delay` seconds, then answers normally (for
    client timeouts).
    """

    status: int
    retry_after: float | None = None
    retry_after_ms: int | None = None
    body: dict[str, Any] | None = None
    delay: float = 0.0
    #: With status 200: send only this many bytes of the real answer (Content-Length matches
    #: the cut body, as when a proxy truncates a response it already sized).
    truncate: int | None = None
    #: With status 200: change the real answer before it is sent (drop a vector, NaN, ...).
    mangle: Callable[[dict[str, Any]], None] | None = None

    def payload(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        if self.status == 401:
            return AZURE_401
        if self.status == 404:
            return AZURE_404
        if self.status == 429:
            return azure_429(self.retry_after or 1)
        if self.status == 503:
            return AZURE_503
        return AZURE_500


@dataclass
class Recorded:
    """One request as the server saw it (headers lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int = 0
    deployment: str | None = None
    truncate: int | None = None

    @property
    def inputs(self) -> list[Any]:
        raw = (self.body or {}).get("input")
        if raw is None:
            return []
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            return [raw]
        return list(raw)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)


@dataclass
class EmbeddingAPIServer:
    """The server. Start with `with` (or `start()`/`stop()`); `url` is the Azure endpoint and
    `openai_base_url` the OpenAI-style base URL."""

    api_key: str = "test-key-0123456789abcdef"
    deployments: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEPLOYMENTS))
    #: Per-request input limit, like the API's 2048 (old Azure deployments allowed 16).
    max_inputs: int = 2048
    #: Reject an input longer than this many characters with the API's context-length 400.
    max_input_chars: int | None = None
    #: Return `data` in a shuffled order, to prove clients sort by `index`.
    shuffle: bool = False
    #: Native vector size for models outside MODEL_DIMS (OpenAI-compatible local servers).
    default_dim: int = 1536
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------
    def start(self) -> EmbeddingAPIServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> EmbeddingAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The Azure endpoint (`azure_endpoint=`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI-style base URL (`base_url=`)."""
        return f"{self.url}/v1"

    def fail_next(self, *failures: Failure | int) -> None:
        """Answer the next requests with these errors, in order, then behave normally."""
        with self._lock:
            for f in failures:
                self._failures.append(f if isinstance(f, Failure) else Failure(f))

    def embedding_requests(self) -> list[Recorded]:
        """Requests that were answered with embeddings (status 200)."""
        return [r for r in self.requests if r.status == 200]

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self.requests.clear()

    # -- request handling (called from the handler thread) --------------------------------
    def _next_failure(self) -> Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def handle(self, rec: Recorded) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = rec.path.strip("/").split("/")
        azure = len(parts) == 4 and parts[:2] == ["openai", "deployments"] \
            and parts[3] == "embeddings"
        plain = parts == ["v1", "embeddings"]
        if rec.method != "POST" or not (azure or plain):
            return 404, {"error": {"code": "404", "message": "Resource not found"}}, {}
        # Authentication comes before anything else, as on the real service.
        bearer = rec.headers.get("authorization", "")
        given = rec.headers.get("api-key") if azure else None
        if given is None and bearer.lower().startswith("bearer "):
            given = bearer[7:]
        if given != self.api_key:
            if azure:
                return 401, AZURE_401, {}
            return 401, {"error": {
                "message": "Incorrect API key provided. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}, {}
        failure = self._next_failure()
        if failure is not None and failure.delay:
            time.sleep(failure.delay)
        if failure is not None and failure.status and failure.status != 200:
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            if failure.retry_after_ms is not None:
                headers["retry-after-ms"] = str(failure.retry_after_ms)
            return failure.status, failure.payload(), headers
        body = rec.body or {}
        if azure:
            rec.deployment = parts[2]
            if "api-version" not in rec.query:
                return 404, {"error": {"code": "404", "message": "Resource not found"}}, {}
            if rec.deployment not in self.deployments:
                return 404, AZURE_404, {}
            model = self.deployments[rec.deployment]
        else:
            model = str(body.get("model", ""))
            if model not in self.deployments:
                return 404, {"error": {
                    "message": f"The model `{model}` does not exist or you do not have access "
                               "to it.", "type": "invalid_request_error", "param": None,
                    "code": "model_not_found"}}, {}
            model = self.deployments[model]
        status, payload, headers = self._embed(rec, body, model)
        if failure is not None and failure.status == 200 and status == 200:
            if failure.mangle is not None:
                failure.mangle(payload)
            rec.truncate = failure.truncate
        return status, payload, headers

    def _embed(self, rec: Recorded, body: dict[str, Any],
               model: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        inputs = rec.inputs
        if not inputs or any(x == "" or x == [] for x in inputs):
            return 400, _invalid("'$.input' is invalid. Please check the API reference: "
                                 "https://platform.openai.com/docs/api-reference."), {}
        if len(inputs) > self.max_inputs:
            return 400, _invalid(f"Too many inputs. The max number of inputs is "
                                 f"{self.max_inputs}."), {}
        if self.max_input_chars is not None:
            for x in inputs:
                if isinstance(x, str) and len(x) > self.max_input_chars:
                    return 400, _invalid(
                        "This model's maximum context length is 8192 tokens, however you "
                        f"requested {len(x)} tokens (0 in your prompt; 0 for the completion). "
                        "Please reduce your prompt; or completion length."), {}
        dims = body.get("dimensions")
        if dims is not None:
            if model == "text-embedding-ada-002":
                return 400, _invalid("This model does not support specifying dimensions."), {}
            if not isinstance(dims, int) or dims < 1:
                return 400, _invalid("Invalid value for 'dimensions'."), {}
        fmt = body.get("encoding_format", "float")
        native = MODEL_DIMS.get(model, self.default_dim)
        data = []
        tokens = 0
        for i, x in enumerate(inputs):
            vec = fake_embedding(x, model, dims, native)
            emb: Any = (base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")
                        if fmt == "base64" else [float(v) for v in vec])
            data.append({"object": "embedding", "index": i, "embedding": emb})
            tokens += max(1, len(x) // 4) if isinstance(x, str) else len(x)
        if self.shuffle:
            random.Random(len(data)).shuffle(data)
        return 200, {"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, {}


def _invalid(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": None}}


class _Handler(BaseHTTPRequestHandler):
    server_state: EmbeddingAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        rec = Recorded(method=method, path=url.path,
                       query={k: v[0] for k, v in parse_qs(url.query).items()},
                       headers={k.lower(): v for k, v in self.headers.items()}, body=body)
        status, payload, headers = self.server_state.handle(rec)
        rec.status = status
        self.server_state._record(rec)
        out = json.dumps(payload).encode()
        if rec.truncate is not None:
            out = out[:rec.truncate]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("x-request-id", f"req-{len(self.server_state.requests)}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)

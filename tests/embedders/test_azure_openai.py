"""Azure OpenAI / OpenAI adapters against a real local HTTP server, through the real SDK."""

from __future__ import annotations

import base64
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("openai")

from embedarena.embedders import azure_openai as az  # noqa: E402
from embedarena.embedders.azure_openai import AzureOpenAIEmbedder, OpenAIEmbedder  # noqa: E402
from embedarena.embedders.registry import create_embedder  # noqa: E402
from embedarena.errors import AuthError, ConfigError, EmbedderError  # noqa: E402
from tests.embedders.azure_server import EmbeddingAPIServer, Failure, fake_embedding  # noqa: E402

TEXTS = ["甲状腺结节", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "甲状腺癌", "what is covered?",
         "子宫肌瘤", "高血压", "糖尿病", "肝硬化"]


def azure(srv: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch,
          deployment: str = "text-embedding-3-large", key: str | None = None,
          **settings: Any) -> AzureOpenAIEmbedder:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", key if key is not None else srv.api_key)
    spec = {"type": "azure_openai", "deployment": deployment, "azure_endpoint": srv.url,
            **settings}
    emb = create_embedder(spec)
    assert isinstance(emb, AzureOpenAIEmbedder)
    return emb


@pytest.fixture(autouse=True)
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the SDK's retry loop asks for, recorded instead of slept: an injected clock,
    so waits are checked exactly and no test sleeps. Only the SDK module's `time` is swapped
    (it calls `time.sleep`); the server thread's delays stay real."""
    import openai._base_client as sdk

    waits: list[float] = []

    class Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            waits.append(seconds)

    monkeypatch.setattr(sdk, "time", Clock())
    monkeypatch.setattr(az, "_pause", waits.append)  # our own wait before re-reading a 200
    return waits


def backoff_bounds(retry: int) -> tuple[float, float]:
    """The SDK's jittered exponential backoff before retry `retry` (from 1): 0.5 s doubling,
    capped at 8 s, minus up to 25 % jitter."""
    from openai._constants import INITIAL_RETRY_DELAY, MAX_RETRY_DELAY

    step = min(INITIAL_RETRY_DELAY * 2.0 ** (retry - 1), MAX_RETRY_DELAY)
    return 0.75 * step, step


def expected(texts: list[str], model: str, dims: int | None = None) -> np.ndarray:
    return np.stack([fake_embedding(t, model, dims) for t in texts])


@pytest.fixture
def word_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact, environment-independent token counting: one token per space-separated word."""
    def tools(model: str) -> Any:
        return (lambda t: len(t.split()),
                lambda t, n: " ".join(t.split()[:n]), True)

    monkeypatch.setattr(az, "token_tools", tools)


def test_happy_path_through_the_sdk(api_server: EmbeddingAPIServer,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    emb = azure(api_server, monkeypatch)
    assert (emb.dim, emb.normalized, emb.similarity) == (3072, True, "dot_product")
    out = emb.embed_documents(TEXTS[:3])
    assert out.shape == (3, 3072) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected(TEXTS[:3], "text-embedding-3-large"), atol=1e-6)
    np.testing.assert_allclose(emb.embed_queries(TEXTS[:1]), out[:1], atol=1e-6)
    (req, _) = api_server.requests
    assert req.path == "/openai/deployments/text-embedding-3-large/embeddings"
    assert req.query == {"api-version": "2024-02-01"}
    assert req.headers["api-key"] == api_server.api_key
    assert "authorization" not in req.headers
    assert req.inputs == TEXTS[:3]


def test_endpoint_from_environment(api_server: EmbeddingAPIServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", api_server.url + "/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", api_server.api_key)
    emb = create_embedder("azure:text-embedding-3-small")
    assert emb.embed_documents(["a"]).shape == (1, 1536)
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        create_embedder("azure:text-embedding-3-small")


def test_order_kept_across_batches_and_shuffled_responses(api_server: EmbeddingAPIServer,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    api_server.shuffle = True
    emb = azure(api_server, monkeypatch, batch_size=3, dimensions=32)
    out = emb.embed_documents(TEXTS)
    assert [r.n_inputs for r in api_server.requests] == [3, 3, 3, 1]
    np.testing.assert_allclose(out, expected(TEXTS, "text-embedding-3-large", 32), atol=1e-6)


def test_input_count_limit_like_old_azure_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddingAPIServer(max_inputs=16) as srv:
        texts = [f"label {i}" for i in range(40)]
        out = azure(srv, monkeypatch, "text-embedding-ada-002", batch_size=16).embed_documents(
            texts)
        assert [r.n_inputs for r in srv.requests] == [16, 16, 8]
        assert all(r.status == 200 for r in srv.requests)
        np.testing.assert_allclose(out, expected(texts, "text-embedding-ada-002"), atol=1e-6)
        # a client that ignored the limit would be refused by the server
        with pytest.raises(EmbedderError, match="Too many inputs"):
            azure(srv, monkeypatch, "text-embedding-ada-002", batch_size=17).embed_documents(
                texts)


def test_token_budget_per_request(api_server: EmbeddingAPIServer,
                                  monkeypatch: pytest.MonkeyPatch, word_tokens: None) -> None:
    texts = ["a b c d", "e f g h", "i j k l", "m n o p q r s t u", "v"]  # 4 4 4 9 1 tokens
    emb = azure(api_server, monkeypatch, max_request_tokens=10, dimensions=8)
    assert emb.plan_batches(list(texts)) == [[0, 1], [2], [3, 4]]
    out = emb.embed_documents(texts)
    assert [r.inputs for r in api_server.requests] == [texts[:2], texts[2:3], texts[3:]]
    np.testing.assert_allclose(out, expected(texts, "text-embedding-3-large", 8), atol=1e-6)


def test_over_long_input_is_an_error_or_truncated(api_server: EmbeddingAPIServer,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  word_tokens: None) -> None:
    long = " ".join(["w"] * 12)
    strict = azure(api_server, monkeypatch, max_input_tokens=10, dimensions=8)
    with pytest.raises(EmbedderError, match=r"text #1 .* has 12 tokens; the limit is 10.*"
                                            r"truncate: true"):
        strict.embed_documents(["ok", long])
    assert api_server.requests == []  # refused before spending a request
    cut = azure(api_server, monkeypatch, max_input_tokens=10, dimensions=8, truncate=True)
    out = cut.embed_documents(["ok", long])
    assert api_server.requests[-1].inputs == ["ok", " ".join(["w"] * 10)]
    np.testing.assert_allclose(out[1], fake_embedding(" ".join(["w"] * 10),
                                                      "text-embedding-3-large", 8), atol=1e-6)
    assert cut.fingerprint != strict.fingerprint


def test_without_exact_counts_the_api_verdict_becomes_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(az, "_tiktoken_encoding", lambda model: None)  # byte estimates
    with EmbeddingAPIServer(max_input_chars=20) as srv:
        emb = azure(srv, monkeypatch, max_input_tokens=50, dimensions=8)
        with pytest.raises(EmbedderError, match=r"text #0 .*set truncate: true"):
            emb.embed_documents(["x" * 30])  # 30 bytes: not certainly too long, API says so
        with pytest.raises(EmbedderError, match="has too many tokens"):
            emb.embed_documents(["x" * 60])  # 60 bytes > 50 could still fit: sent, refused
        # byte-based truncation is always within the limit
        ok = azure(srv, monkeypatch, max_input_tokens=20, dimensions=8, truncate=True)
        ok.embed_documents(["数" * 30])
        assert len(srv.requests[-1].inputs[0].encode()) <= 20


def test_empty_text_is_sent_as_a_space(api_server: EmbeddingAPIServer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = azure(api_server, monkeypatch, dimensions=8).embed_documents(["a", ""])
    assert api_server.requests[-1].inputs == ["a", " "]
    assert out.shape == (2, 8)


def test_retries_are_the_sdks(api_server: EmbeddingAPIServer,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    emb = azure(api_server, monkeypatch, max_attempts=4)
    assert emb._client_or_make().max_retries == 3  # attempts = 1 + the SDK's retries


def test_429_honours_retry_after(api_server: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch,
                                 sdk_sleeps: list[float]) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8)
    api_server.fail_next(Failure(429, retry_after=7))
    out = emb.embed_documents(["a", "b"])
    assert sdk_sleeps == [7.0]  # exactly the server's ask, not the backoff
    assert [r.status for r in api_server.requests] == [429, 200]
    np.testing.assert_allclose(out, expected(["a", "b"], "text-embedding-3-large", 8), atol=1e-6)


def test_429_honours_retry_after_ms(api_server: EmbeddingAPIServer,
                                    monkeypatch: pytest.MonkeyPatch,
                                    sdk_sleeps: list[float]) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8)
    api_server.fail_next(Failure(429, retry_after=3, retry_after_ms=300))
    emb.embed_documents(["a"])
    assert sdk_sleeps == [0.3]  # Azure's ms header preferred over the seconds one


def test_429_asking_more_than_the_sdk_waits_stops_at_once(
        api_server: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch,
        sdk_sleeps: list[float]) -> None:
    # The SDK honours Retry-After up to its cap and refuses to retry beyond it.
    from openai._constants import MAX_RETRY_AFTER_DELAY

    emb = azure(api_server, monkeypatch, dimensions=8)
    api_server.fail_next(Failure(429, retry_after=MAX_RETRY_AFTER_DELAY + 1))
    with pytest.raises(EmbedderError, match=rf"is rate limiting and asks to wait longer .*"
                                            rf"\(Retry-After: {MAX_RETRY_AFTER_DELAY + 1}\); "
                                            "try again later") as ei:
        emb.embed_documents(["a"])
    assert "\n" not in str(ei.value) and ei.value.__cause__ is None
    assert sdk_sleeps == [] and len(api_server.requests) == 1
    api_server.fail_next(Failure(429, retry_after=MAX_RETRY_AFTER_DELAY))  # at the cap: waits
    emb.embed_documents(["a"])
    assert sdk_sleeps == [MAX_RETRY_AFTER_DELAY]


def test_persistent_429_gives_up_in_one_line(api_server: EmbeddingAPIServer,
                                             monkeypatch: pytest.MonkeyPatch,
                                             sdk_sleeps: list[float]) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=3)
    api_server.fail_next(*[Failure(429, retry_after=2)] * 5)
    with pytest.raises(EmbedderError) as ei:
        emb.embed_documents(["a"])
    assert str(ei.value) == (f"Azure OpenAI at {api_server.url}: HTTP 429 on all 3 attempts for "
                             "'text-embedding-3-large'; giving up")
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    assert sdk_sleeps == [2.0, 2.0] and len(api_server.requests) == emb.requests_made == 3


def test_5xx_and_408_back_off_then_succeed(api_server: EmbeddingAPIServer,
                                           monkeypatch: pytest.MonkeyPatch,
                                           sdk_sleeps: list[float]) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=4)
    api_server.fail_next(500, 503, 408)
    out = emb.embed_documents(["a"])
    assert [r.status for r in api_server.requests] == [500, 503, 408, 200]
    assert len(sdk_sleeps) == 3
    for retry, wait in enumerate(sdk_sleeps, 1):
        low, high = backoff_bounds(retry)
        assert low <= wait <= high
    assert sdk_sleeps == sorted(sdk_sleeps)  # the jitter ranges do not overlap: it grows
    np.testing.assert_allclose(out[0], fake_embedding("a", "text-embedding-3-large", 8),
                               atol=1e-6)


def test_persistent_5xx_gives_up_after_max_attempts(api_server: EmbeddingAPIServer,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    sdk_sleeps: list[float]) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=7)
    api_server.fail_next(*[503] * 10)
    with pytest.raises(EmbedderError, match="HTTP 503 on all 7 attempts"):
        emb.embed_documents(["a"])
    assert len(api_server.requests) == emb.requests_made == 7
    assert len(sdk_sleeps) == 6
    assert all(backoff_bounds(i)[0] <= w <= backoff_bounds(i)[1]
               for i, w in enumerate(sdk_sleeps, 1))
    assert max(sdk_sleeps) <= 8.0 and min(sdk_sleeps[-2:]) >= 6.0  # capped at 8 s


def test_timeouts_are_explicit_and_retried(api_server: EmbeddingAPIServer,
                                           monkeypatch: pytest.MonkeyPatch,
                                           sdk_sleeps: list[float],
                                           caplog: pytest.LogCaptureFixture) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, timeout=0.3, max_attempts=2)
    api_server.fail_next(Failure(0, delay=1.0))
    caplog.set_level(logging.WARNING, logger=az.__name__)
    emb.embed_documents(["a"])  # the slow answer was abandoned, the retry answered
    assert "no answer within 0.3 s or connection failed on attempt 1 of 2; retrying" \
        in caplog.text
    assert emb.requests_made == 2 and len(sdk_sleeps) == 1
    assert backoff_bounds(1)[0] <= sdk_sleeps[0] <= backoff_bounds(1)[1]
    api_server.fail_next(Failure(0, delay=1.0), Failure(0, delay=1.0))
    with pytest.raises(EmbedderError, match=r"no answer within 0.3 s on all 2 attempts"):
        emb.embed_documents(["b"])


def test_connection_refused(monkeypatch: pytest.MonkeyPatch, sdk_sleeps: list[float]) -> None:
    srv = EmbeddingAPIServer().start()
    emb = azure(srv, monkeypatch, dimensions=8, max_attempts=3)
    srv.stop()
    with pytest.raises(EmbedderError, match=r"connection failed \(ConnectError\) on all 3 "
                                            "attempts"):
        emb.embed_documents(["a"])
    assert len(sdk_sleeps) == 2 and sdk_sleeps == sorted(sdk_sleeps) and sdk_sleeps[0] > 0


def test_retries_are_logged_without_the_key(api_server: EmbeddingAPIServer,
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8)
    api_server.fail_next(Failure(429, retry_after_ms=250), 502)
    caplog.set_level(logging.DEBUG)
    emb.embed_documents(["a"])
    ours = [r.getMessage() for r in caplog.records
            if r.name == az.__name__ and r.levelno == logging.WARNING]
    assert ours == [
        f"Azure OpenAI at {api_server.url}: HTTP 429 (retry-after-ms: 250) on attempt 1 of 6; "
        "retrying",
        f"Azure OpenAI at {api_server.url}: HTTP 502 on attempt 2 of 6; retrying"]
    sdk = [r.getMessage() for r in caplog.records
           if r.name.startswith("openai") and r.levelno == logging.INFO]
    assert sdk[0] == "Retrying request in 0.250000 seconds (retry 1 of 5)"
    assert api_server.api_key not in caplog.text


def test_other_4xx_is_one_line_with_the_server_text_scrubbed(
        api_server: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8)
    echo = (f"Bad input for key {api_server.api_key}; also sk-proj-abcdef123456 and "
            "Bearer abc.def.ghi")
    api_server.fail_next(Failure(422, body={"error": {"message": echo}}))
    with pytest.raises(EmbedderError, match=r"rejected the request for 'text-embedding-3-large' "
                                            r"\(HTTP 422\): Bad input for key \*\*\*") as ei:
        emb.embed_documents(["a"])
    msg = str(ei.value)
    assert api_server.api_key not in msg and "sk-proj" not in msg and "abc.def" not in msg
    assert "\n" not in msg and len(api_server.requests) == 1  # not retried


def test_our_own_backoff_settings_are_gone(api_server: EmbeddingAPIServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'backoff_initial'"):
        azure(api_server, monkeypatch, backoff_initial=1.0)


def test_401_is_one_clean_line_without_the_key(api_server: EmbeddingAPIServer,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    secret = "wrong-SECRET-0123456789-key"
    emb = azure(api_server, monkeypatch, key=secret, dimensions=8)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as ei:
        emb.embed_documents(["a"])
    msg = str(ei.value)
    assert api_server.url in msg and "AZURE_OPENAI_API_KEY" in msg and "401" in msg
    assert secret not in msg and "Traceback" not in msg and "\n" not in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    assert secret not in caplog.text and secret not in repr(emb)
    assert len(api_server.requests) == 1  # never retried
    assert api_server.requests[0].headers["api-key"] == secret  # it was really sent


def test_404_names_the_deployment(api_server: EmbeddingAPIServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    emb = azure(api_server, monkeypatch, deployment="text-embedding-3-largee", dimensions=8)
    with pytest.raises(EmbedderError, match=r"deployment 'text-embedding-3-largee' was not "
                                            r"found at http://127\.0\.0\.1:\d+ \(HTTP 404\)"):
        emb.embed_documents(["a"])
    assert len(api_server.requests) == 1


def test_dimensions_and_dim_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddingAPIServer(deployments={"prod-emb": "text-embedding-3-small",
                                         "text-embedding-ada-002": "text-embedding-ada-002"}
                            ) as srv:
        emb = azure(srv, monkeypatch, deployment="prod-emb", dimensions=256)
        assert emb.dim == 256 and srv.requests == []  # known without asking
        out = emb.embed_documents(["a"])
        assert (srv.requests[-1].body or {})["dimensions"] == 256
        np.testing.assert_allclose(out[0], fake_embedding("a", "text-embedding-3-small", 256),
                                   atol=1e-6)
        ada = azure(srv, monkeypatch, deployment="text-embedding-ada-002")
        assert ada.dim == 1536 and len(srv.requests) == 1
        assert ada.embed_documents(["a"]).shape == (1, 1536)
        assert "dimensions" not in (srv.requests[-1].body or {})
        unknown = azure(srv, monkeypatch, deployment="prod-emb")  # custom name, no `model`
        assert unknown.dim == 1536 and len(srv.requests) == 3  # one probe request
        assert azure(srv, monkeypatch, deployment="prod-emb",
                     model="text-embedding-3-small").dim == 1536
        assert len(srv.requests) == 3


def test_key_from_a_0600_file_and_not_from_a_0644_one(api_server: EmbeddingAPIServer,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    keyfile = tmp_path / "azure.key"
    keyfile.write_text(api_server.api_key + "\n")
    os.chmod(keyfile, 0o600)
    emb = azure(api_server, monkeypatch, key="", dimensions=8, api_key_file=str(keyfile))
    assert emb.embed_documents(["a"]).shape == (1, 8)
    assert api_server.requests[-1].headers["api-key"] == api_server.api_key
    os.chmod(keyfile, 0o644)
    with pytest.raises(ConfigError, match=r"readable by group or others.*chmod 600") as ei:
        azure(api_server, monkeypatch, key="", dimensions=8, api_key_file=str(keyfile))
    assert api_server.api_key not in str(ei.value)


def test_missing_key_names_the_variable(api_server: EmbeddingAPIServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="set the environment variable AZURE_OPENAI_API_KEY"):
        azure(api_server, monkeypatch, key="")
    monkeypatch.setenv("TEAM_B_KEY", api_server.api_key)
    emb = azure(api_server, monkeypatch, key="", api_key_env="TEAM_B_KEY", dimensions=8)
    assert emb.embed_documents(["a"]).shape == (1, 8)


def test_fingerprint(api_server: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fp = azure(api_server, monkeypatch).fingerprint
    assert fp.startswith("azure_openai:")
    assert azure(api_server, monkeypatch, batch_size=7, max_attempts=2,
                 timeout=5).fingerprint == fp
    assert azure(api_server, monkeypatch, key="other-key").fingerprint == fp
    assert azure(api_server, monkeypatch, dimensions=1024).fingerprint != fp
    assert azure(api_server, monkeypatch, "text-embedding-3-small").fingerprint != fp
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", api_server.api_key)
    other = create_embedder({"type": "azure_openai", "deployment": "text-embedding-3-large",
                             "azure_endpoint": "https://other.openai.azure.com"})
    assert other.fingerprint != fp


def test_plain_openai_compatible_endpoint(api_server: EmbeddingAPIServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", api_server.api_key)
    emb = create_embedder({"type": "openai", "model": "text-embedding-3-small",
                           "base_url": api_server.openai_base_url, "dimensions": 16})
    assert isinstance(emb, OpenAIEmbedder) and emb.fingerprint.startswith("openai:")
    out = emb.embed_documents(["a", "b"])
    req = api_server.requests[-1]
    assert req.path == "/v1/embeddings" and (req.body or {})["model"] == "text-embedding-3-small"
    assert req.headers["authorization"] == f"Bearer {api_server.api_key}"
    np.testing.assert_allclose(out, expected(["a", "b"], "text-embedding-3-small", 16),
                               atol=1e-6)
    monkeypatch.setenv("OPENAI_API_KEY", "bad-key-123456")
    bad = create_embedder({"type": "openai", "model": "text-embedding-3-small",
                           "base_url": api_server.openai_base_url})
    with pytest.raises(AuthError, match=r"refused the key in \$OPENAI_API_KEY") as ei:
        bad.embed_documents(["a"])
    assert "bad-key-123456" not in str(ei.value)
    monkeypatch.setenv("OPENAI_API_KEY", api_server.api_key)
    with pytest.raises(EmbedderError, match="model 'nope' was not found"):
        create_embedder({"type": "openai", "model": "nope",
                         "base_url": api_server.openai_base_url}).embed_documents(["a"])


def test_openai_without_base_url_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        create_embedder("openai:text-embedding-3-small")


def test_local_openai_compatible_server_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddingAPIServer(api_key="no-key", deployments={"bge-m3": "bge-m3"},
                            default_dim=24) as srv:
        emb = create_embedder({"type": "openai", "model": "bge-m3",
                               "base_url": srv.openai_base_url})
        assert emb.dim == 24  # discovered with one probe
        assert emb.embed_documents(["a"]).shape == (1, 24)



# -- unreadable 200s, and errors that name the batch (issue 12, items 5 and 6) ------------------
def _vectors(payload: dict[str, Any]) -> list[np.ndarray]:
    out = []
    for d in payload["data"]:
        e = d["embedding"]
        out.append(np.frombuffer(base64.b64decode(e), "<f4").copy() if isinstance(e, str)
                   else np.asarray(e, dtype=np.float32))
    return out


def _set_vectors(payload: dict[str, Any], vecs: list[np.ndarray]) -> None:
    for d, v in zip(payload["data"], vecs):
        d["embedding"] = (base64.b64encode(v.astype("<f4").tobytes()).decode()
                          if isinstance(d["embedding"], str) else [float(x) for x in v])


def nan_in_second(payload: dict[str, Any]) -> None:
    vecs = _vectors(payload)
    vecs[1][3] = np.nan
    _set_vectors(payload, vecs)


def shorter_vectors(payload: dict[str, Any]) -> None:
    _set_vectors(payload, [v[:-1] for v in _vectors(payload)])


def drop_last(payload: dict[str, Any]) -> None:
    payload["data"].pop()


def test_truncated_200_body_is_retried(api_server: EmbeddingAPIServer,
                                       monkeypatch: pytest.MonkeyPatch,
                                       sdk_sleeps: list[float],
                                       caplog: pytest.LogCaptureFixture) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=3)
    api_server.fail_next(Failure(200, truncate=60))
    caplog.set_level(logging.WARNING, logger=az.__name__)
    out = emb.embed_documents(["a", "b"])
    np.testing.assert_allclose(out, expected(["a", "b"], "text-embedding-3-large", 8), atol=1e-6)
    assert emb.requests_made == 2 and sdk_sleeps == [0.5]
    assert ("HTTP 200 with an unreadable body (truncated or invalid JSON at character 60 of 60)"
            " on attempt 1 of 3; retrying") in caplog.text


def test_truncated_bodies_share_the_attempt_budget_with_http_errors(
        api_server: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch,
        sdk_sleeps: list[float]) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=4)
    api_server.fail_next(503, Failure(200, truncate=10), 502, Failure(200, truncate=99),
                         Failure(200, truncate=5))
    with pytest.raises(EmbedderError) as ei:
        emb.embed_documents(["a"])
    msg = str(ei.value)
    assert re.fullmatch(
        rf"Azure OpenAI at {re.escape(api_server.url)}: HTTP 200 with an unreadable body "
        r"\(truncated or invalid JSON at character \d+ of 99\) on all 4 attempts for "
        "'text-embedding-3-large'; giving up", msg), msg
    assert ei.value.__cause__ is None and "\n" not in msg
    assert len(api_server.requests) == emb.requests_made == 4  # never more than max_attempts


def test_a_200_that_is_not_the_embeddings_schema_is_retried(
        api_server: EmbeddingAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=2)
    api_server.fail_next(Failure(200, mangle=lambda p: p.pop("data")),
                         Failure(200, mangle=lambda p: p.update(data="oops")))
    with pytest.raises(EmbedderError, match=r"unreadable body \(not the embeddings schema: "
                                            r"\w+\) on all 2 attempts"):
        emb.embed_documents(["a"])
    assert len(api_server.requests) == 2


@pytest.mark.parametrize(("failure", "cause"), [
    (Failure(500), r"HTTP 500 on all 2 attempts"),
    (Failure(200, mangle=drop_last), r"returned 49 embeddings for 50 inputs \(indexes missing "
                                     r"49\)"),
    (Failure(200, mangle=shorter_vectors), r"expected 8-dim vectors, .* returned 7"),
    (Failure(200, mangle=nan_in_second),
     r"returned NaN or infinite values in 1 of 50 vectors \(first for 'text 201'\)"),
    (Failure(400, body={"error": {"message": "This model's maximum context length is 8192 "
                                             "tokens, however you requested 9000 tokens"}}),
     r"refused a request because an input is longer than the model's context"),
])
def test_every_embedder_error_names_the_batch(api_server: EmbeddingAPIServer,
                                              monkeypatch: pytest.MonkeyPatch,
                                              failure: Failure, cause: str) -> None:
    """Through `embed_in_batches` (what index build and the runner use): the batch number,
    the 1-based text range and the first id of the failing batch, then the cause."""
    from embedarena.embedders.base import embed_in_batches

    emb = azure(api_server, monkeypatch, dimensions=8, max_attempts=2, batch_size=50)
    texts = [f"text {i}" for i in range(250)]
    ids = [f"D{i:04d}" for i in range(250)]
    api_server.fail_next(*[Failure(200)] * 4, failure, failure)  # batches 1-2 (2 requests each)
    with pytest.raises(EmbedderError) as ei:
        embed_in_batches(emb, "document", texts, ids, batch_size=100)
    msg = str(ei.value)
    assert msg.startswith(f"model '{emb.name}', document batch 3/3, texts 201–250 "
                          "(first id 'D0200'): "), msg
    assert re.search(cause, msg), msg
    assert "\n" not in msg and ei.value.__cause__ is None

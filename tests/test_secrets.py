"""The one secret rule: names that hold secrets, pointers that do not, and scrubbing."""

from __future__ import annotations

import pytest

from embedarena.errors import ConfigError
from embedarena.secrets import is_secret_name, reject_secret_fields, scrub


@pytest.mark.parametrize("name", [
    "api_key", "openai_api_key", "Azure_API_Key", "key", "password", "ES_PASSWORD",
    "azure_ad_token", "bearer_token", "access_token", "client_secret", "secret_name",
    "openaiApiKey", "apiKey", "Authorization", "credentials", "cookie", "token"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "api_key_env", "api_key_file", "password_file", "max_input_tokens", "tokenizer",
    "deployment", "keyword", "monkey_patch", "max_request_tokens", "path", ""])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_reject_names_the_key_never_the_value() -> None:
    with pytest.raises(ConfigError) as ei:
        reject_secret_fields({"models": [{"kwargs": {"openai_api_key": "sk-LEAK"}}]}, "exp.yaml",
                             "keys come from the environment")
    msg = str(ei.value)
    assert "'models.0.kwargs.openai_api_key' looks like a secret" in msg and "LEAK" not in msg
    reject_secret_fields({"api_key_env": "MY_KEY", "max_input_tokens": 5}, "x", "")


def test_scrub() -> None:
    text = ("GET http://elastic:hunter2@127.0.0.1:9200 with sk-abcdefghijkl, "
            "Authorization: Bearer abcdefgh12345678, key 0123456789abcdef0123456789abcdef "
            "and my-own-secret")
    out = scrub(text, known=["my-own-secret", None])
    for leak in ("hunter2", "sk-abcdefghijkl", "abcdefgh12345678",
                 "0123456789abcdef0123456789abcdef", "my-own-secret"):
        assert leak not in out
    assert "http://***@127.0.0.1:9200" in out
    assert scrub("sk-abcdefghijkl", mask="[hidden]") == "[hidden]"
    sha = "a" * 64  # a sha256 is not a 32-hex-digit key
    assert scrub(sha) == sha

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


# -- a key pasted where a variable NAME belongs (issue 12, item 14) ----------------------------
AZURE_HEX = "3f9c0d5e7a1b4c2d8e6f0a9b1c2d3e4f"
AZURE_LONG = ("8HcQ2mXr5TnVb7Kw9LpZs3Df6Gh1Jk4Aq0Ew2Ry5Ui8Op7As3Df6Gh9Jk2Lz5Xc8Vb1Nm4Qw7Er0Ty3"
              "Ui6Op9A")  # 84 characters, the shape of current Azure keys


@pytest.mark.parametrize("value", [AZURE_HEX, AZURE_LONG, "sk-proj-abc123def456",
                                   " " + AZURE_LONG + "\n"])
def test_a_pasted_key_is_refused_without_echo(value: str) -> None:
    from embedarena.secrets import check_env_var_name, looks_like_secret_value

    assert looks_like_secret_value(value)
    with pytest.raises(ValueError, match="looks like a key") as ei:
        check_env_var_name(value, "api_key_env")
    assert value.strip() not in str(ei.value) and value.strip()[:8] not in str(ei.value)


@pytest.mark.parametrize("value", ["AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "TEAM_B_KEY",
                                   "MY_KEY_2024", "key1"])
def test_variable_names_pass(value: str) -> None:
    from embedarena.secrets import check_env_var_name

    assert check_env_var_name(value, "api_key_env") == value


def test_pasted_key_in_a_spec_and_an_experiment_never_echoed(tmp_path) -> None:  # noqa: ANN001
    from embedarena.embedders.registry import create_embedder
    from embedarena.experiment import load_experiment
    from embedarena.specs import _short

    spec = {"type": "azure_openai", "deployment": "d", "azure_endpoint": "http://127.0.0.1:1",
            "api_key_env": AZURE_LONG}
    with pytest.raises(ConfigError, match="api_key_env looks like a key") as ei:
        create_embedder(spec)
    assert AZURE_LONG not in str(ei.value)
    exp = tmp_path / "e.yaml"
    exp.write_text("name: x\ncorpus: {path: c.json}\nqueries: [{path: q.jsonl}]\nmodels:\n"
                   f"  - {{type: azure_openai, deployment: d, api_key_env: {AZURE_HEX}}}\n")
    (tmp_path / "c.json").write_text('["a"]')
    (tmp_path / "q.jsonl").write_text('{"query": "a", "pos": ["a"]}\n')
    with pytest.raises(ConfigError) as ei2:
        load_experiment(exp)
    assert AZURE_HEX not in str(ei2.value) and "looks like a key" in str(ei2.value)
    # a typeless entry is quoted back, with the pasted key hidden
    assert AZURE_HEX not in _short({"deployment": "d", "api_key_env": AZURE_HEX})

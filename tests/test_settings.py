"""Settings precedence and secret handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedarena.errors import ConfigError
from embedarena.settings import load_es_settings

ENV_KEYS = [k for k in os.environ if k.startswith("EMBEDARENA_ES_") or k == "EMBEDARENA_CONFIG"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ENV_KEYS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/embedarena/config.toml


def test_defaults_mean_managed_node() -> None:
    s = load_es_settings()
    assert s.managed and s.auth_kind() == "none"


def test_env_splits_multiple_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_ES_URL", "http://a:9200, http://b:9200")
    assert load_es_settings().url == ["http://a:9200", "http://b:9200"]


def test_precedence_args_over_env_over_file(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    (tmp_path / "embedarena.toml").write_text(
        '[es]\nurl = ["http://file:9200"]\nusername = "fileuser"\nrequest_timeout = 5\n'
    )
    s = load_es_settings()
    assert s.url == ["http://file:9200"] and s.username == "fileuser"
    assert s.request_timeout == 5
    monkeypatch.setenv("EMBEDARENA_ES_URL", "http://env:9200")
    s = load_es_settings()
    assert s.url == ["http://env:9200"] and s.username == "fileuser"
    assert load_es_settings(username="arg").username == "arg"


def test_explicit_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text('[es]\nurl = "http://other:9200"\n')
    monkeypatch.setenv("EMBEDARENA_CONFIG", str(cfg))
    assert load_es_settings().url == ["http://other:9200"]
    monkeypatch.setenv("EMBEDARENA_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml"):
        load_es_settings()


def test_password_in_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "embedarena.toml").write_text('[es]\npassword = "s3cret-in-file"\n')
    with pytest.raises(ConfigError, match="do not put 'password' in a config file") as ei:
        load_es_settings()
    assert "s3cret-in-file" not in str(ei.value)


def test_secret_file_must_be_0600(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    os.chmod(f, 0o644)
    monkeypatch.setenv("EMBEDARENA_ES_PASSWORD_FILE", str(f))
    with pytest.raises(ConfigError, match="chmod 600"):
        load_es_settings().resolved_password()
    os.chmod(f, 0o600)
    assert load_es_settings().resolved_password() == "from-file"


def test_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_ES_URL", "http://x:9200")
    monkeypatch.setenv("EMBEDARENA_ES_API_KEY", "key-that-must-not-leak")
    s = load_es_settings()
    assert s.auth_kind() == "api_key"
    assert "key-that-must-not-leak" not in repr(s) + str(s) + s.model_dump_json()


def test_status_output_shows_auth_kind_not_secret(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """`embedarena es status` in process, through the real `main()`."""
    env = {"EMBEDARENA_ES_URL": "http://127.0.0.1:1",
           "EMBEDARENA_ES_USERNAME": "elastic", "EMBEDARENA_ES_PASSWORD": "pw-never-shown-123",
           "EMBEDARENA_ES_MAX_RETRIES": "0", "EMBEDARENA_ES_REQUEST_TIMEOUT": "2",
           "HOME": str(tmp_path)}
    proc = cli("es", "status", env=env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "auth: basic" in out and "http://127.0.0.1:1" in out
    assert "pw-never-shown-123" not in out
    assert proc.code == 6 and "cannot reach" in out and "Traceback" not in out


# -- credentials inside the URL (issue 12, item 15) ---------------------------------------------
def test_userinfo_in_the_url_becomes_basic_auth_and_leaves_the_url(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_ES_URL",
                       "http://elastic:pw%40with-at-URL-SECRET@es1:9200,http://es2:9200/")
    s = load_es_settings()
    assert s.url == ["http://es1:9200", "http://es2:9200/"]
    assert (s.username, s.resolved_password(), s.auth_kind()) == (
        "elastic", "pw@with-at-URL-SECRET", "basic")
    assert "URL-SECRET" not in repr(s) + s.model_dump_json()


def test_userinfo_conflicts_are_refused_without_quoting_the_url(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_ES_URL", "http://elastic:URL-SECRET-1@es1:9200")
    monkeypatch.setenv("EMBEDARENA_ES_PASSWORD", "OTHER-SECRET-2")
    with pytest.raises(ConfigError, match="carries a password and") as ei:
        load_es_settings()
    monkeypatch.delenv("EMBEDARENA_ES_PASSWORD")
    monkeypatch.setenv("EMBEDARENA_ES_USERNAME", "bob")
    with pytest.raises(ConfigError, match="names a different user") as ei2:
        load_es_settings()
    monkeypatch.delenv("EMBEDARENA_ES_USERNAME")
    monkeypatch.setenv("EMBEDARENA_ES_URL", "http://a:URL-SECRET-1@es1:9200,http://b:x@es2:9200")
    with pytest.raises(ConfigError, match="different credentials") as ei3:
        load_es_settings()
    for e in (ei, ei2, ei3):
        assert "SECRET" not in str(e.value) and "es1" not in str(e.value)


def test_same_password_in_url_and_env_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDARENA_ES_URL", "https://elastic:same@es1:9200")
    monkeypatch.setenv("EMBEDARENA_ES_PASSWORD", "same")
    s = load_es_settings()
    assert s.url == ["https://es1:9200"] and s.resolved_password() == "same"


@pytest.mark.es
def test_url_userinfo_is_used_against_the_real_node(cli, es_node,  # noqa: ANN001
                                                    tmp_path: Path) -> None:
    """`es status` with the password only inside the URL: it connects, and no output shows it."""
    pytest.importorskip("elasticsearch")
    host = es_node.url.split("://", 1)[1]
    env = {"EMBEDARENA_ES_URL": f"http://elastic:{es_node.password}@{host}",
           "EMBEDARENA_ES_USERNAME": None, "EMBEDARENA_ES_PASSWORD_FILE": None,
           "HOME": str(tmp_path)}
    proc = cli("es", "status", env=env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.code == 0, out
    assert es_node.url in out and es_node.password not in out


def test_secret_file_read_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_bytes(b"\xff\xfe not utf-8")
    os.chmod(f, 0o600)
    monkeypatch.setenv("EMBEDARENA_ES_PASSWORD_FILE", str(f))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_es_settings().resolved_password()

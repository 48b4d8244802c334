"""Connection settings for Elasticsearch, from the environment or a config file.

Precedence (highest first): explicit arguments > environment (`EMBEDARENA_ES_*`) > config file
(`EMBEDARENA_CONFIG`, else `./embedarena.toml`, else `~/.config/embedarena/config.toml`, section
`[es]`) > defaults. Secrets are `SecretStr`, so printing the settings never shows them; the config
file may name a secrets file (`password_file` / `api_key_file`) that must be 0600.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from embedarena.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def config_file_path() -> Path | None:
    """The config file in force, if any (the first that exists in precedence order)."""
    env = os.environ.get("EMBEDARENA_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(f"EMBEDARENA_CONFIG points to {p}, which does not exist")
        return p
    for p in (Path.cwd() / "embedarena.toml", Path.home() / ".config/embedarena/config.toml"):
        if p.is_file():
            return p
    return None


_AUTHORITY = re.compile(r"(?i)^((?:[a-z][a-z0-9+.-]*:)?//)?([^/?#]*)(.*)$")


def split_userinfo(url: str) -> tuple[str, tuple[str, str | None] | None]:
    """(`url` without `user:password@`, (user, password) or None); percent-escapes decoded.

    Takes the last `@` of the host part, so a pasted password with a raw `@` still splits
    right."""
    m = _AUTHORITY.match(url.strip())
    if m is None or "@" not in m.group(2):
        return url.strip(), None
    userinfo, _, host = m.group(2).rpartition("@")
    user, sep, password = userinfo.partition(":")
    return (f"{m.group(1) or ''}{host}{m.group(3)}",
            (unquote(user), unquote(password) if sep else None))


def read_secret_file(path: Path, what: str) -> str:
    """Read a secret from a file that only its owner may read (mode 0600 or stricter)."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {p}: {e.strerror}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} file {p} is readable by group or others (mode {oct(mode & 0o777)}); "
            f"run: chmod 600 {p}"
        )
    try:
        return p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {what} file {p}: {reason}") from None


class _TomlSection(PydanticBaseSettingsSource):
    """Reads the `[es]` table of the config file."""

    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        path = config_file_path()
        if path is None:
            return
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: cannot parse config file: {e}") from e
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for secret in ("password", "api_key"):
            if secret in table:
                raise ConfigError(
                    f"{path}: do not put '{secret}' in a config file; use the environment "
                    f"(EMBEDARENA_ES_{secret.upper()}) or '{secret}_file' pointing to a 0600 file"
                )
        self._data = table

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class ESSettings(BaseSettings):
    """How to reach Elasticsearch. With no `url`, the managed local node is used."""

    model_config = SettingsConfigDict(env_prefix="EMBEDARENA_ES_", extra="forbid")

    url: list[str] | None = Field(
        default=None, description="One or more node URLs; comma-separated in the environment."
    )
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    ca_certs: Path | None = None
    ssl_fingerprint: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0
    max_retries: int = 3

    @field_validator("url", mode="before")
    @classmethod
    def _split_urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            parts = [u.strip() for u in v.split(",") if u.strip()]
            return parts or None
        return v

    @model_validator(mode="after")
    def _credentials_out_of_urls(self) -> ESSettings:
        """`http://elastic:PASSWORD@host:9200` works (as basic auth), but the URL kept, shown
        and stored everywhere is `http://host:9200`: a password in a URL would otherwise reach
        every meta.json and error message. Messages here never quote the URL."""
        if not self.url:
            return self
        clean: list[str] = []
        creds: set[tuple[str, str | None]] = set()
        for u in self.url:
            stripped, cred = split_userinfo(u)
            clean.append(stripped)
            if cred is not None:
                creds.add(cred)
        self.url = clean
        if not creds:
            return self
        if len(creds) > 1:
            raise ConfigError("EMBEDARENA_ES_URL: the URLs carry different credentials; put "
                              "one user in EMBEDARENA_ES_USERNAME and its password in "
                              "EMBEDARENA_ES_PASSWORD (or _PASSWORD_FILE) instead")
        user, password = creds.pop()
        if user:
            if self.username is not None and self.username != user:
                raise ConfigError("EMBEDARENA_ES_URL names a different user than "
                                  "EMBEDARENA_ES_USERNAME; give the user in one place")
            self.username = user
        if password is not None:
            given = self.password.get_secret_value() if self.password is not None else None
            if self.password_file is not None or (given is not None and given != password):
                raise ConfigError("EMBEDARENA_ES_URL carries a password and "
                                  "EMBEDARENA_ES_PASSWORD(_FILE) gives another; give it in one "
                                  "place (preferably a 0600 file)")
            self.password = SecretStr(password)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _PlainEnv(settings_cls), _TomlSection(settings_cls, "es"))

    # -- derived -------------------------------------------------------------------------
    @property
    def managed(self) -> bool:
        """True when no URL is configured: commands use the managed local node."""
        return not self.url

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return read_secret_file(self.password_file, "Elasticsearch password")
        return None

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is not None:
            return read_secret_file(self.api_key_file, "Elasticsearch API key")
        return None

    def auth_kind(self) -> Literal["api_key", "basic", "none"]:
        if self.api_key is not None or self.api_key_file is not None:
            return "api_key"
        if self.username is not None:
            return "basic"
        return "none"


class _PlainEnv(PydanticBaseSettingsSource):
    """`EMBEDARENA_ES_*` variables read as plain strings (so `URL=a,b` needs no JSON)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        key = f"EMBEDARENA_ES_{field_name.upper()}"
        return os.environ.get(key), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            val = os.environ.get(f"EMBEDARENA_ES_{name.upper()}")
            if val is not None and val != "":
                out[name] = val
        return out


def load_es_settings(**overrides: Any) -> ESSettings:
    """Build settings, mapping validation errors to one-line ConfigErrors."""
    from pydantic import ValidationError

    try:
        return ESSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"invalid Elasticsearch setting '{loc}': {first['msg']}") from None


def load_prices() -> dict[str, float]:
    """The `[prices]` table of the config file: USD per 1M input tokens by deployment or model
    name (`"text-embedding-3-small" = 0.02`); empty without a config file or table. An
    experiment's own `prices` win over these. Nothing is built in: prices change."""
    path = config_file_path()
    if path is None:
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot parse config file: {e}") from e
    table = doc.get("prices", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [prices] must be a table of name = USD per 1M tokens")
    return check_prices(table, f"{path} [prices]")


def check_prices(table: dict[str, Any], where: str) -> dict[str, float]:
    """`table` as {name: non-negative float}, or a `ConfigError` naming the bad entry."""
    out: dict[str, float] = {}
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}: price of {name!r} must be a non-negative number of "
                              f"USD per 1M tokens, not {value!r}")
        out[str(name)] = float(value)
    return out

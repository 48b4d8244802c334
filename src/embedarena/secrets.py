"""The one secret rule: which setting names hold secrets, and how text is scrubbed of them.

Experiment files, model specs and run metadata are committed, mailed and shown in reports, so
a setting whose *name* says it holds a secret (`api_key`, `password`, `azure_ad_token`, ...) is
refused where settings come in and hidden where they go out; names that say *where* a secret
lives (`api_key_env`, `password_file`) are allowed. Text quoted from elsewhere (server errors,
URLs, metadata values) goes through `scrub` before it is shown or stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from embedarena.errors import ConfigError

#: Last words of a setting name that mean "this value is a secret".
_SECRET_WORDS = ("apikey", "key", "password", "passwd", "pwd", "secret", "token",
                 "credential", "credentials", "authorization", "cookie")
#: Words anywhere in a name that mean the same.
_SECRET_PARTS = frozenset({"password", "passwd", "secret", "credentials", "authorization"})
#: Last words of names that point at a secret instead of holding it.
_POINTER_WORDS = frozenset({"env", "file", "path", "var"})

HIDDEN = "[hidden]"
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_SECRET_VALUE = re.compile(
    r"\bsk-[A-Za-z0-9_*-]{4,}"                                  # OpenAI-style keys
    r"|\b(?:Bearer|Basic|ApiKey)\s+[A-Za-z0-9+/=._-]{8,}"       # Authorization headers
    r"|\b[0-9a-f]{32}\b")                                       # Azure keys (32 hex digits)


def is_secret_name(name: str) -> bool:
    """True for setting names that hold a secret (`api_key`, `openaiApiKey`, `password`,
    `azure_ad_token`), False for pointers (`api_key_env`, `password_file`) and look-alikes
    (`max_input_tokens`, `tokenizer`)."""
    low = str(name).strip().lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", low) if p]
    if not parts or parts[-1] in _POINTER_WORDS:
        return False
    if parts[-1] in _SECRET_WORDS or _SECRET_PARTS.intersection(parts):
        return True
    compact = "".join(parts)  # camelCase names arrive as one part
    return compact.endswith(("apikey", "password", "secret", "accesstoken", "authtoken"))


def looks_like_secret_value(value: str) -> bool:
    """True for a value shaped like a key or token rather than a name: what a user pasted
    where the NAME of an environment variable belongs (`api_key_env: 3f9c...`). Names have
    underscores or are short; keys are long runs of letters and digits, or match `scrub`'s
    shapes (`sk-...`, 32 hex digits)."""
    v = str(value).strip()
    if _SECRET_VALUE.search(v):
        return True
    return (len(v) >= 20 and "_" not in v and any(c.isdigit() for c in v)
            and any(c.isalpha() for c in v))


def check_env_var_name(value: str, setting: str) -> str:
    """`value` if it can be the name of an environment variable, else ValueError whose text
    never contains `value` (it may be the key itself)."""
    v = str(value).strip()
    if looks_like_secret_value(v):
        raise ValueError(f"{setting} looks like a key, not the NAME of an environment variable; "
                         f"put the key in a variable (export AZURE_OPENAI_API_KEY=...) and name "
                         f"that variable here. The value is not shown. If it was a real key, "
                         "rotate it")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
        raise ValueError(f"{setting} is the NAME of an environment variable (letters, digits "
                         "and _; the key itself never goes into a spec)")
    return v


def hide_pasted_secrets(obj: Any) -> Any:
    """A copy of a nested mapping/list where pointer settings (`*_env`, `*_file`) whose value
    looks like a key are `[hidden]`, for messages that quote a user's entry."""
    if isinstance(obj, dict):
        return {k: (HIDDEN if isinstance(v, str) and not is_secret_name(str(k))
                    and str(k).lower().endswith(("_env", "_var")) and looks_like_secret_value(v)
                    else HIDDEN if is_secret_name(str(k)) else hide_pasted_secrets(v))
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [hide_pasted_secrets(v) for v in obj]
    return obj


def reject_secret_fields(obj: Any, where: str, hint: str, trail: str = "") -> None:
    """Raise `ConfigError` naming the first secret-named key in a nested mapping/list.

    The message names the key, never its value (the value may be the secret itself).
    """
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_name(str(k)):
                raise ConfigError(f"{where}: '{trail}{k}' looks like a secret. {hint}")
            reject_secret_fields(v, where, hint, f"{trail}{k}.")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            reject_secret_fields(v, where, hint, f"{trail}{i}.")


def scrub(text: str, known: Iterable[str | None] = (), mask: str = "***") -> str:
    """`text` without secrets: the `known` secret values and values shaped like API keys or
    Authorization headers become `mask`; credentials inside URLs become `***@`."""
    for secret in known:
        if secret:
            text = text.replace(secret, mask)
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _SECRET_VALUE.sub(mask, text)

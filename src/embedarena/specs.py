"""Model entries as typed specs: one base class and one registry of kinds, parsed once.

A model entry in an experiment file is an inline string (`hf:/models/bge`, `minilm`,
`azure:text-embedding-3-large@1024`, `bm25:jieba`) or a mapping (`{name: bge, type: hf,
path: ...}`, `{name: hyb, hybrid: [bm25, minilm]}`). Each kind registers its settings class
here together with its inline prefixes, bare names and, for mapping-only kinds, the key that
identifies it, so the parser has no list of kinds of its own: a new kind is one module and
one `register_spec` call (embedders in `embedarena.embedders`, row kinds in
`embedarena.evaluation.rows`, fine-tune entries in `embedarena.training.finetune`).

Specs end up in run metadata and in each index's `_meta`, so secret-named fields are refused
(`embedarena.secrets`): keys come from the environment or a 0600 file.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)

from embedarena.errors import ConfigError
from embedarena.secrets import hide_pasted_secrets, reject_secret_fields

SECRET_HINT = ("Model specs are written to run metadata and index metadata, so keys come only "
               "from the environment (AZURE_OPENAI_API_KEY, OPENAI_API_KEY, or the variable "
               "named by api_key_env) or from api_key_file, a file only you can read (chmod 600)")


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

    @field_validator("name", mode="before")
    @classmethod
    def _name_ok(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        v = v.strip()
        if not v:
            raise ValueError("a model name cannot be empty")
        if len(v) > 120:
            raise ValueError("a model name is at most 120 characters")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        """The name used when an entry gives none (derived from its settings)."""
        return None

    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        """Settings of the inline form `<prefix>:<rest>` (kinds with a prefix override it)."""
        raise ConfigError(f"model type '{cls.type_name()}' has no inline form")

    @classmethod
    def type_name(cls) -> str:
        default = cls.model_fields["type"].default
        return default if isinstance(default, str) else ""

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

    def depends_on(self) -> list[str]:
        """Names of other entries of the experiment this one needs (a hybrid's members)."""
        return []

    def check_dependency(self, dep: ModelSpec) -> None:
        """Raise `ValueError` when `dep` (an entry this one depends on) cannot serve it."""

    def implied(self, names: set[str]) -> tuple[list[tuple[ModelSpec, str]], ModelSpec]:
        """Entries this one brings into the experiment when `names` lack them, each with what
        it is to this entry ("base model", "retriever"), and this entry referring to them by
        name. A fine-tune brings its base, a two-stage row an inline retriever, so the table
        always shows what a derived row is compared against."""
        return [], self

    def public_dict(self) -> dict[str, Any]:
        """The settings for run metadata and index `_meta` (no secrets by construction).

        Unset optional settings (None, meaning "decide from the model") are left out, so
        parsing `spec.public_dict()` gives `spec` back.
        """
        return self.model_dump(mode="json", exclude_none=True)


S = TypeVar("S", bound=type[ModelSpec])


@dataclass(frozen=True)
class SpecKind:
    """One registered kind of model entry and the forms that select it."""

    type_name: str
    cls: builtins.type[ModelSpec]
    prefixes: tuple[str, ...] = ()
    names: Mapping[str, Mapping[str, Any]] | None = None
    key: str | None = None
    forms: tuple[str, ...] = ()


_KINDS: dict[str, SpecKind] = {}
_PREFIXES: dict[str, str] = {}
_NAMES: dict[str, str] = {}
_KEYS: dict[str, str] = {}


def register_spec(cls: S | None = None, *, prefixes: Iterable[str] = (),
                  names: Mapping[str, Mapping[str, Any]] | None = None,
                  key: str | None = None, forms: Iterable[str] = ()) -> Any:
    """Register a spec class (also usable as a class decorator with keyword arguments).

    `prefixes`: inline `prefix:rest` forms (`cls.from_inline(rest)` gives the settings);
    `names`: bare inline names and their settings (`minilm`, `bm25`); `key`: a mapping without
    `type` that has this key is of this kind (`hybrid`, `finetune`); `forms`: how the inline
    forms read, for help and error messages. A type, prefix, name or key is registered once:
    a silent override would make experiment files mean different things by import order.
    """

    def deco(c: S) -> S:
        t = c.type_name()
        if not t:
            raise TypeError(f"{c.__qualname__} needs a `type: Literal[...]` field with a default")
        if t in _KINDS:
            raise ConfigError(f"model type '{t}' is already registered "
                              f"(by {_KINDS[t].cls.__module__}.{_KINDS[t].cls.__qualname__})")
        pre, nm = tuple(prefixes), dict(names or {})
        for table, entries, what in ((_PREFIXES, pre, "inline prefix"),
                                     (_NAMES, tuple(nm), "inline name"),
                                     (_KEYS, (key,) if key else (), "entry key")):
            for e in entries:
                if e in table:
                    raise ConfigError(f"{what} '{e}' is already registered by type "
                                      f"'{table[e]}'")
        _KINDS[t] = SpecKind(t, c, pre, nm, key, tuple(forms))
        _PREFIXES.update(dict.fromkeys(pre, t))
        _NAMES.update(dict.fromkeys(nm, t))
        if key:
            _KEYS[key] = t
        return c

    return deco(cls) if cls is not None else deco


def spec_types() -> list[str]:
    """Every registered `type:` (sorted)."""
    return sorted(_KINDS)


def spec_class(type_name: str) -> type[ModelSpec]:
    kind = _KINDS.get(type_name)
    if kind is None:
        raise ConfigError(f"unknown model type '{type_name}'; known types: "
                          f"{', '.join(spec_types())}")
    return kind.cls


def inline_forms() -> list[str]:
    """The inline forms of every registered kind, for help text and errors."""
    return [f for k in _KINDS.values() for f in k.forms]


def parse_spec(obj: Any, *, allowed: tuple[type[ModelSpec], ...] | None = None,
               context: dict[str, Any] | None = None) -> ModelSpec:
    """A model spec from an inline string, a mapping, or a spec (returned as is).

    Every problem is a `ConfigError` that names the entry and, for unknown keys, lists the
    allowed ones. `allowed` restricts the kinds (e.g. only embedders, for training);
    `context` reaches the spec validators (the experiment file's folder, for relative paths).
    """
    if isinstance(obj, ModelSpec):
        spec = obj
    else:
        if isinstance(obj, str):
            data = _parse_inline(obj)
        elif isinstance(obj, dict):
            data = dict(obj)
        else:
            raise ConfigError(f"a model entry is a string ({', '.join(inline_forms())}) or a "
                              f"mapping with name/type/settings, not {type(obj).__name__}")
        label = str(data.get("name") or data.get("type") or "?")
        reject_secret_fields(data, f"model '{label}'", SECRET_HINT)
        mtype = data.get("type")
        if mtype is None:
            mtype = next((t for k, t in _KEYS.items() if k in data), None)
            if mtype is not None:
                data["type"] = mtype
        if not isinstance(mtype, str) or not mtype:
            raise ConfigError(f"model entry {_short(data)} has no 'type'; one of: "
                              f"{', '.join(spec_types())}")
        cls = spec_class(mtype)
        try:
            spec = cls.model_validate(data, context=context)
        except ValidationError as e:
            raise ConfigError(explain(e, cls, data)) from None
    if allowed is not None and not isinstance(spec, allowed):
        kinds = ", ".join(sorted(k.type_name for k in _KINDS.values()
                                  if issubclass(k.cls, allowed)))
        raise ConfigError(f"model '{spec.name}' is of type '{spec.type}', which cannot be used "
                          f"here; usable types: {kinds}")
    return spec


def _parse_inline(s: str) -> dict[str, Any]:
    s = s.strip()
    if s in _NAMES:
        return {"type": _NAMES[s], **_KINDS[_NAMES[s]].names[s]}  # type: ignore[index]
    prefix, sep, rest = s.partition(":")
    rest = rest.strip()
    if not sep or not rest:
        raise ConfigError(f"cannot read model '{s}'; inline forms: {', '.join(inline_forms())}")
    t = _PREFIXES.get(prefix)
    if t is None:
        raise ConfigError(f"unknown model prefix '{prefix}' in '{s}'; inline forms: "
                          f"{', '.join(inline_forms())}")
    try:
        settings = _KINDS[t].cls.from_inline(rest)
    except ConfigError as e:
        raise ConfigError(f"model '{s}': {e}") from None
    return {"type": t, **settings}


def _short(data: dict[str, Any]) -> str:
    text = repr(hide_pasted_secrets(data))
    return text if len(text) <= 80 else text[:77] + "..."


def explain(e: ValidationError, cls: type[BaseModel], data: dict[str, Any],
            where: str | None = None) -> str:
    """One line for a validation error: unknown keys with the allowed list, else the first
    cause (a missing name is usually a consequence of a missing `path`, so say the cause)."""
    if where is None:
        default_name: Callable[[dict[str, Any]], str | None] = getattr(
            cls, "default_name", lambda d: None)
        name = data.get("name") or default_name(data) or "?"
        where = f"model '{name}' (type {data.get('type')})"
    errors = e.errors()
    extra = [".".join(str(x) for x in err["loc"]) for err in errors
             if err["type"] == "extra_forbidden" and err["loc"]]
    if extra:
        allowed = (cls.allowed_keys() if issubclass(cls, ModelSpec)
                   else sorted(cls.model_fields))
        return (f"{where}: unknown setting{'s' if len(extra) > 1 else ''} "
                f"{', '.join(repr(x) for x in extra)}; allowed: {', '.join(allowed)}")
    causes = [err for err in errors if tuple(err["loc"]) != ("name",)]
    first = (causes or errors)[0]
    loc = ".".join(str(x) for x in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {loc + ': ' if loc else ''}{msg}"

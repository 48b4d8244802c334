"""The one place that builds an Elasticsearch client and maps its errors into ours.

With `EMBEDARENA_ES_URL` (or a config file) set, the client goes to that cluster; otherwise to
the managed local node, authenticating as `elastic` with the password from its 0600 file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedarena.errors import AuthError, SearchBackendError
from embedarena.settings import ESSettings, load_es_settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


@dataclass(frozen=True)
class Target:
    """Where we connect and how (never the secret itself): safe to print and to store."""

    urls: list[str]
    auth_kind: str
    managed: bool

    @property
    def display(self) -> str:
        # settings already strip `user:password@`; scrub again so no URL shown can carry one
        from embedarena.secrets import scrub

        return scrub(", ".join(self.urls))


def resolve(settings: ESSettings | None = None) -> tuple[Target, dict[str, Any]]:
    """Client kwargs for the configured cluster or the managed node."""
    from embedarena.indexer.node import USER, ManagedNode

    s = settings or load_es_settings()
    kwargs: dict[str, Any] = {
        "request_timeout": s.request_timeout,
        "max_retries": s.max_retries,
        "retry_on_timeout": True,
    }
    if s.managed:
        node = ManagedNode()
        state = node.read_state()
        if state is None or node.pid() is None:
            raise SearchBackendError(
                "no Elasticsearch configured (EMBEDARENA_ES_URL) and the managed local node is "
                "not running: start it with `embedarena es start`"
            )
        kwargs["basic_auth"] = (USER, node.password())
        return Target([state.url], "basic (managed node)", True), {"hosts": [state.url], **kwargs}
    urls = list(s.url or [])
    api_key = s.resolved_api_key()
    if api_key:
        kwargs["api_key"] = api_key
    elif s.username:
        kwargs["basic_auth"] = (s.username, s.resolved_password() or "")
    if s.ca_certs:
        kwargs["ca_certs"] = str(s.ca_certs)
    if s.ssl_fingerprint:
        kwargs["ssl_assert_fingerprint"] = s.ssl_fingerprint
    if not s.verify_certs:
        kwargs["verify_certs"] = False
    return Target(urls, s.auth_kind(), False), {"hosts": urls, **kwargs}


def connect(settings: ESSettings | None = None, check: bool = True) -> tuple[Elasticsearch, Target]:
    """A ready client. With `check`, one `info()` call proves the URL and credentials work."""
    from elasticsearch import Elasticsearch

    target, kwargs = resolve(settings)
    client = Elasticsearch(**kwargs)
    if check:
        server_version(client, target)
    return client, target


def connect_node(name: str) -> tuple[Elasticsearch, Target]:
    """A client for the managed node called `name` (any version), from its state file."""
    from elasticsearch import Elasticsearch

    from embedarena.indexer.node import USER, ManagedNode

    node = ManagedNode(name)
    state = node.read_state()
    if state is None or node.pid() is None:
        raise SearchBackendError(f"the managed node '{name}' is not running: start it with "
                                 f"`embedarena es start --name {name}`")
    client = Elasticsearch(state.url, basic_auth=(USER, node.password()), request_timeout=30)
    return client, Target([state.url], "basic (managed node)", True)


def server_version(client: Elasticsearch, target: Target | None = None) -> str:
    """The cluster's version; also the cheapest call that proves URL and credentials work.

    The minimal distribution we run has no `GET /` handler (the rest-root module is not in it),
    so this asks for node versions first and falls back to `info()` on other clusters.
    """
    from elasticsearch import ApiError

    with es_errors(target):
        try:
            resp = client.nodes.info(node_id="_local", metric="_none",
                                     filter_path="nodes.*.version")
            nodes = resp.get("nodes") or {}
            for n in nodes.values():
                return str(n["version"])
        except ApiError as e:
            if e.meta.status == 401:
                raise
        return str(client.info()["version"]["number"])


@contextlib.contextmanager
def es_errors(target: Target | None = None, what: str = "") -> Iterator[None]:
    """Map elasticsearch-py exceptions to one-line embedarena errors naming the URL."""
    import elastic_transport
    from elasticsearch import ApiError, AuthenticationException, AuthorizationException

    where = target.display if target else "Elasticsearch"
    prefix = f"{what}: " if what else ""
    try:
        yield
    except AuthenticationException:
        raise AuthError(
            f"{prefix}authentication failed at {where}: wrong user/password or API key "
            "(check EMBEDARENA_ES_USERNAME / EMBEDARENA_ES_PASSWORD / EMBEDARENA_ES_API_KEY)"
        ) from None
    except AuthorizationException as e:
        raise AuthError(f"{prefix}not allowed at {where}: {_reason(e)}") from None
    except ApiError as e:
        raise SearchBackendError(f"{prefix}{where} answered {e.meta.status}: {_reason(e)}") \
            from None
    except elastic_transport.ConnectionTimeout:
        raise SearchBackendError(f"{prefix}timed out talking to {where}") from None
    except elastic_transport.TransportError as e:
        raise SearchBackendError(f"{prefix}cannot reach {where}: {type(e).__name__}") from None


def _reason(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            root = (err.get("root_cause") or [err])[0]
            return f"{root.get('type', '')}: {root.get('reason', '')}".strip(": ")
        if err:
            return str(err)
    return str(getattr(e, "message", e))

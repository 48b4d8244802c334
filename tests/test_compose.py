"""compose/docker-compose.yml: no Docker engine runs here, so check what it declares."""

from __future__ import annotations

from pathlib import Path

import yaml

from embedarena.indexer.node import DEFAULT_VERSION

COMPOSE = Path(__file__).resolve().parents[1] / "compose" / "docker-compose.yml"


def _env(service: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in service["environment"])


def test_elasticsearch_service_matches_managed_node() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    es = doc["services"]["elasticsearch"]
    assert es["image"].endswith(f":${{ES_VERSION:-{DEFAULT_VERSION}}}")
    env = _env(es)
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "true"
    # the password comes from the environment and is required, never a literal
    assert env["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    # published on loopback only
    assert all(str(p).startswith("127.0.0.1:") for p in es["ports"])
    assert "healthcheck" in es


def test_kibana_is_an_optional_profile() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    kib = doc["services"]["kibana"]
    assert kib["profiles"] == ["kibana"]
    assert "profiles" not in doc["services"]["elasticsearch"]
    assert all(str(p).startswith("127.0.0.1:") for p in kib["ports"])
    assert _env(kib)["ELASTICSEARCH_PASSWORD"].startswith("${KIBANA_PASSWORD:?")

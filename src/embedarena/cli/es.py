"""`embedarena es start | stop | status | logs`: the managed local Elasticsearch node."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from embedarena.cli.console import console, err_console
from embedarena.indexer import node as node_mod

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.indexer.cluster import ManagedCluster
    from embedarena.indexer.es import Target

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Manage the local Elasticsearch node that embedarena uses when no EMBEDARENA_ES_URL is "
        "set: fetched from Maven Central, run on this machine's JDK, bound to 127.0.0.1, "
        "security on.\n\nExample: embedarena es start --heap 2g"
    ),
)

NAME = typer.Option("default", "--name", help="Node name (state under EMBEDARENA_HOME/nodes).")


@app.command()
def start(
    port: int = typer.Option(node_mod.DEFAULT_PORT, envvar="EMBEDARENA_ES_PORT",
                             help="HTTP port on 127.0.0.1."),
    heap: str = typer.Option(node_mod.DEFAULT_HEAP, help="JVM heap, e.g. 512m or 2g."),
    distribution: Path | None = typer.Option(
        None, "--distribution", exists=True, dir_okay=False,
        help="Use this elasticsearch-<version>.zip instead of fetching it with Maven.",
    ),
    version: str = typer.Option(node_mod.DEFAULT_VERSION, help="Elasticsearch version "
                                f"(8 or 9 for the pinned {node_mod.DEFAULT_VERSION} or "
                                f"{node_mod.LATEST_9}; 9.x needs Java 21+)."),
    timeout: float = typer.Option(180.0, help="Seconds to wait for the node to become healthy."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Start a local cluster of this many "
                              "nodes (ports PORT.., transport PORT+100.., transport TLS)."),
    name: str = NAME,
) -> None:
    """Fetch (once), start and wait for a healthy single-node Elasticsearch (or a cluster).

    Example: embedarena es start --port 9200 --heap 1g
    Example: embedarena es start --nodes 3 --name c3 --port 9400 --heap 512m
    """
    if nodes > 1:
        _start_cluster(name, nodes, port, heap, distribution, version, timeout)
        return
    node = node_mod.ManagedNode(name=name, version=node_mod.resolve_version(version))
    with err_console.status("starting Elasticsearch") as status:
        state, already = node.start(
            port=port, heap=heap, distribution=distribution, timeout=timeout,
            progress=lambda m: status.update(m),
        )
    if already:
        console.print(f"Elasticsearch {state.version} is already running at {state.url} "
                      f"(pid {state.pid})")
    else:
        console.print(f"[green]Elasticsearch {state.version} is up[/] at {state.url} "
                      f"(pid {state.pid}, Java {state.java_major}, heap {state.heap})")
    console.print(f"  user: {node_mod.USER}; password file (0600): {node.password_file}")
    console.print(f"  try: curl -u {node_mod.USER}:\"$(cat {node.password_file})\" {state.url}")


def _start_cluster(name: str, nodes: int, port: int, heap: str, distribution: Path | None,
                   version: str, timeout: float) -> None:
    from embedarena.indexer.cluster import DEFAULT_CLUSTER_HEAP, ManagedCluster

    cluster = ManagedCluster(name, nodes, version=node_mod.resolve_version(version), port=port)
    heap = DEFAULT_CLUSTER_HEAP if heap == node_mod.DEFAULT_HEAP else heap
    with err_console.status(f"starting a {nodes}-node cluster") as status:
        results = cluster.start(heap=heap, distribution=distribution, timeout=max(timeout, 240),
                                progress=lambda m: status.update(m))
    health = cluster.health() or {}
    console.print(f"[green]cluster '{name}' is up[/]: {nodes} nodes of Elasticsearch "
                  f"{cluster.version}, health {health.get('status')}")
    for m, (state, already) in zip(cluster.members(), results, strict=True):
        console.print(f"  {m.name}: {state.url} (pid {state.pid}, transport "
                      f"{m.member.transport_port if m.member else '?'}, heap {state.heap})"
                      + (" already running" if already else ""))
    console.print(f"  user: {node_mod.USER}; password file (0600): {cluster.password_file}")
    console.print(f"  transport TLS certificates (0600): {cluster.tls_dir}")
    console.print(f"  try: curl -u {node_mod.USER}:\"$(cat {cluster.password_file})\" "
                  f"{cluster.url}/_cat/nodes")


@app.command()
def stop(
    purge: bool = typer.Option(False, "--purge", help="Also delete the node's data and password."),
    name: str = NAME,
) -> None:
    """Stop the managed node; its data is kept unless --purge.

    Example: embedarena es stop --purge
    """
    from embedarena.indexer.cluster import ManagedCluster

    cluster = ManagedCluster.load(name)
    if cluster is not None:
        n = cluster.stop(purge=purge)
        console.print(f"stopped {n} of {cluster.size} nodes of cluster '{name}'"
                      + (" and deleted their data" if purge else ""))
        return
    node = node_mod.ManagedNode(name=name)
    stopped = node.stop(purge=purge)
    if stopped:
        console.print("stopped Elasticsearch" + (" and deleted its data" if purge else ""))
    else:
        console.print("Elasticsearch was not running" + ("; deleted its data" if purge else ""))


@app.command()
def status(name: str = NAME) -> None:
    """Show where embedarena connects: the configured cluster or the managed node.

    Prints the URL and the kind of authentication, never the secret.

    Example: embedarena es status
    """
    from embedarena.settings import config_file_path, load_es_settings

    settings = load_es_settings()
    cfg = config_file_path()
    if not settings.managed:
        from embedarena.indexer.es import connect, es_errors, server_version

        client, target = connect(settings, check=False)
        console.print(f"cluster: {target.display} (configured"
                      + (f" in {cfg}" if cfg else " in the environment") + ")")
        console.print(f"auth: {target.auth_kind}")
        version = server_version(client, target)
        with es_errors(target):
            health = client.cluster.health()
        console.print(f"version: {version}; health: {health['status']}")
        _print_capabilities(client, target)
        return
    from embedarena.indexer.cluster import ManagedCluster

    cluster = ManagedCluster.load(name)
    if cluster is not None:
        _cluster_status(cluster)
        return
    node = node_mod.ManagedNode(name=name)
    st = node.status()
    console.print(f"managed node '{name}': {st.detail}")
    if st.url:
        console.print(f"url: {st.url}")
    if st.running:
        console.print(f"pid: {st.pid}; version: {st.version}; health: {st.health}")
        console.print(f"auth: basic as '{node_mod.USER}', password in {node.password_file}")
        if st.health is not None:
            from embedarena.indexer.es import connect_node

            _print_capabilities(*connect_node(name))
    if not st.running:
        raise typer.Exit(1)


def _cluster_status(cluster: ManagedCluster) -> None:
    running = 0
    console.print(f"managed cluster '{cluster.name}': {cluster.size} nodes, Elasticsearch "
                  f"{cluster.version}")
    for m, st in cluster.status():
        running += st.running
        port = m.member.transport_port if m.member else "?"
        console.print(f"  {m.name}: {st.detail}; url {st.url}; transport {port}"
                      + (f"; pid {st.pid}" if st.pid else ""))
    health = cluster.health() if running else None
    if health:
        console.print(f"health: {health['status']}; nodes {health['number_of_nodes']}; "
                      f"active shards {health['active_shards']}; unassigned "
                      f"{health['unassigned_shards']}")
    console.print(f"auth: basic as '{node_mod.USER}', password in {cluster.password_file}")
    if not running:
        raise typer.Exit(1)


def _print_capabilities(client: Elasticsearch, target: Target) -> None:
    """The node's optional features (probed once) and the path embedarena takes without them."""
    from embedarena.indexer.capabilities import detect

    caps = detect(client, target)
    feats = caps.features()
    names = {"painless": "painless", "analysis_common": "analysis-common",
             "rank_vectors": "rank-vectors", "rrf_linear_retrievers": "rrf/linear retrievers"}
    console.print("features: " + ", ".join(f"{names[k]} {'yes' if v else 'no'}"
                                           for k, v in feats.items())
                  + f" (licence {caps.license or 'unknown'})")
    for what, path in caps.paths().items():
        console.print(f"  {what.replace('_', ' ')}: {path}")


@app.command()
def logs(
    lines: int = typer.Option(50, "-n", "--lines", help="How many lines from the end."),
    name: str = NAME,
) -> None:
    """Print the end of the managed node's log.

    Example: embedarena es logs -n 100
    """
    node = node_mod.ManagedNode(name=name)
    out = node.log_lines(lines)
    if not out:
        console.print(f"no log yet at {node.logs_dir}")
        return
    for ln in out:
        console.out(ln.rstrip("\n"), highlight=False)

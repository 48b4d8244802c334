"""The managed local Elasticsearch node: the embedded default when no ES URL is configured.

It runs the distribution that Elastic publishes on Maven Central
(`org.elasticsearch.distribution.integ-test-zip:elasticsearch`), obtained with the Maven client
(or from a zip the user gives), checksum-verified, unpacked under `paths.home()/dist`, and started
on this machine's JDK as a single node bound to 127.0.0.1 with security on and a generated
password kept in a 0600 file. Elasticsearch refuses to run as root; as root we run it as an
unprivileged user (`nobody` unless EMBEDARENA_ES_RUN_AS says otherwise).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from embedarena import paths
from embedarena.errors import NodeError

# The default is the newest 8.x on Maven Central (8.x runs on JDK 17+). 9.x is published there
# too (9.0.0, 9.1.0, 9.2.0, 9.2.4, 9.2.8, 9.5.2-9.5.4 resolved on 2026-12-02; 9.x needs JDK 21+)
# and runs with `embedarena es start --version 9.5.4`. sha256 pinned here so a tampered or
# truncated download is refused even when Maven's own .sha1 matches it (or, as for the 9.x
# zips, Maven Central serves no checksum file at all).
DEFAULT_VERSION = "8.19.21"
KNOWN_SHA256 = {
    "8.19.21": "215d5f3dbf0609a149f6218a9e47b6ae2df34ebbff3c5754e35f15a5e5393c8a",
    "9.5.4": "d9b0c28e08e499f6510b52ad66ec4bf9cdceab97cc28b3456989b8744b896934",
}
#: The newest 9.x pinned above: what `--version 9` and `EMBEDARENA_TEST_ES_VERSION=9` mean.
LATEST_9 = "9.5.4"
GROUP = "org.elasticsearch.distribution.integ-test-zip"
ARTIFACT = "elasticsearch"
USER = "elastic"
DEFAULT_PORT = 9200
DEFAULT_HEAP = "1g"

ProgressFn = Callable[[str], None]


def resolve_version(wanted: str | None) -> str:
    """A full version from `8` / `9` (the pinned default / newest 9.x) or a full version."""
    w = (wanted or "").strip()
    return {"": DEFAULT_VERSION, "8": DEFAULT_VERSION, "9": LATEST_9}.get(w, w)


def java_range(version: str) -> tuple[int, int]:
    """Lowest and highest JDK major this ES version runs on (from Elastic's support matrix)."""
    major = int(version.split(".")[0])
    if major >= 9:
        return 21, 25
    if major == 8:
        return 17, 25
    return 11, 17


@dataclass
class NodeState:
    """What `start` records in `state.json`, so other commands can find and reach the node."""

    version: str
    url: str
    port: int
    pid: int | None
    java_home: str
    java_major: int
    run_as: str | None
    heap: str


@dataclass
class NodeStatus:
    running: bool
    url: str | None
    pid: int | None
    version: str | None
    health: str | None
    detail: str


class ManagedNode:
    """One named local node: `paths.home()/nodes/<name>`, sharing unpacked distributions."""

    def __init__(self, name: str = "default", home: Path | None = None,
                 version: str = DEFAULT_VERSION, member: ClusterMember | None = None,
                 password_file: Path | None = None) -> None:
        self.home = (home or paths.home()).resolve()
        self.name = name
        self.version = version
        self.dist_root = self.home / "dist"
        self.dir = self.home / "nodes" / name
        self.conf_dir = self.dir / "config"
        self.data_dir = self.dir / "data"
        self.logs_dir = self.dir / "logs"
        self.tmp_dir = self.dir / "tmp"
        self.pid_file = self.dir / "es.pid"
        self.state_file = self.dir / "state.json"
        # the secret lives outside the directory handed to the unprivileged ES user
        self.password_file = password_file or self.home / "secrets" / f"{name}.elastic.password"
        #: set when this node is one member of a multi-node cluster (see indexer/cluster.py)
        self.member = member

    # -- obtaining the distribution --------------------------------------------------------
    @property
    def es_home(self) -> Path:
        return self.dist_root / f"elasticsearch-{self.version}"

    def obtain(self, distribution: Path | None = None,
               progress: ProgressFn | None = None) -> Path:
        """Make sure the distribution is unpacked; return its home. Idempotent, and safe when
        two nodes start at once (a file lock serialises fetch and unpack)."""
        if (self.es_home / "bin" / "elasticsearch").exists():
            return self.es_home
        self.dist_root.mkdir(parents=True, exist_ok=True)
        with (self.dist_root / ".obtain.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (self.es_home / "bin" / "elasticsearch").exists():
                return self.es_home
            zip_path = Path(distribution) if distribution else self._maven_fetch(progress)
            if not zip_path.is_file():
                raise NodeError(f"distribution zip not found: {zip_path}")
            self._verify(zip_path, progress)
            self._unpack(zip_path, progress)
        return self.es_home

    def _maven_fetch(self, progress: ProgressFn | None) -> Path:
        mvn = shutil.which("mvn")
        coords = f"{GROUP}:{ARTIFACT}:{self.version}:zip"
        if mvn is None:
            raise NodeError(
                "the Maven client (mvn) is not installed, so the Elasticsearch distribution "
                f"cannot be fetched. Install Maven, or download {coords} yourself and pass "
                "--distribution PATH/TO/elasticsearch.zip"
            )
        repo_local = _maven_repo_local()
        target = (repo_local / GROUP.replace(".", "/") / ARTIFACT / self.version
                  / f"{ARTIFACT}-{self.version}.zip")
        if target.is_file():
            return target
        _say(progress, f"fetching {coords} with Maven")
        # Maven's strict checksum mode (-C) refuses an artifact published without a .sha1, as
        # the 9.x zips are; a pinned version is checked against its sha256 below instead.
        strict = [] if self.version in KNOWN_SHA256 else ["-C"]
        cmd = [mvn, "-q", "-B", *strict, "dependency:get", f"-Dartifact={coords}",
               "-Dtransitive=false"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as e:
            raise NodeError(f"`{' '.join(cmd)}` timed out after 900 s") from e
        if proc.returncode != 0 or not target.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise NodeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
                            + " | ".join(tail))
        return target

    def _verify(self, zip_path: Path, progress: ProgressFn | None) -> None:
        _say(progress, f"verifying {zip_path.name}")
        sha1 = hashlib.sha1()
        sha256 = hashlib.sha256()
        with zip_path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha1.update(chunk)
                sha256.update(chunk)
        maven_sha1 = zip_path.with_name(zip_path.name + ".sha1")
        if maven_sha1.is_file():
            expected1 = maven_sha1.read_text().split()[0].strip().lower()
            if expected1 != sha1.hexdigest():
                raise NodeError(f"{zip_path}: sha1 {sha1.hexdigest()} does not match "
                                f"{maven_sha1.name} ({expected1}); delete it and retry")
        expected = KNOWN_SHA256.get(self.version)
        if expected is None:
            if not maven_sha1.is_file():
                raise NodeError(
                    f"no checksum known for Elasticsearch {self.version} and no .sha1 beside "
                    f"{zip_path}; embedarena pins checksums for: {', '.join(KNOWN_SHA256)}"
                )
        elif sha256.hexdigest() != expected:
            raise NodeError(f"{zip_path}: sha256 {sha256.hexdigest()} is not the published "
                            f"Elasticsearch {self.version} zip ({expected})")

    def _unpack(self, zip_path: Path, progress: ProgressFn | None) -> None:
        _say(progress, f"unpacking into {self.dist_root}")
        self.dist_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.dist_root))
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for info in zf.infolist():
                    zf.extract(info, tmp)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode:
                        os.chmod(tmp / info.filename, mode)
            inner = tmp / f"elasticsearch-{self.version}"
            if not (inner / "bin" / "elasticsearch").exists():
                raise NodeError(f"{zip_path} does not hold elasticsearch-{self.version}/bin")
            _make_world_readable(inner)
            inner.rename(self.es_home)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- JDK -------------------------------------------------------------------------------
    def find_java(self) -> tuple[Path, int]:
        """The newest JDK this ES version supports: ES_JAVA_HOME, JAVA_HOME, or /usr/lib/jvm."""
        lo, hi = java_range(self.version)
        explicit = os.environ.get("ES_JAVA_HOME")
        if explicit:
            major = _java_major(Path(explicit))
            if major is None:
                raise NodeError(f"ES_JAVA_HOME={explicit} is not a JDK (no bin/java)")
            if not lo <= major <= hi:
                raise NodeError(f"ES_JAVA_HOME={explicit} is Java {major}; Elasticsearch "
                                f"{self.version} needs Java {lo} to {hi}")
            return Path(explicit), major
        found: dict[Path, int] = {}
        candidates = [os.environ.get("JAVA_HOME")]
        jvm_dir = Path("/usr/lib/jvm")
        if jvm_dir.is_dir():
            candidates += sorted(str(p) for p in jvm_dir.iterdir() if p.is_dir())
        java_on_path = shutil.which("java")
        if java_on_path:
            candidates.append(str(Path(java_on_path).resolve().parents[1]))
        for c in candidates:
            if not c:
                continue
            p = Path(c).resolve()
            major = _java_major(p)
            if major is not None:
                found[p] = major
        usable = {p: m for p, m in found.items() if lo <= m <= hi}
        if not usable:
            seen = ", ".join(f"{p} (Java {m})" for p, m in found.items()) or "none"
            raise NodeError(
                f"Elasticsearch {self.version} needs a JDK {lo} to {hi}; found: {seen}. "
                "Install one (e.g. apt-get install openjdk-17-jre-headless) or set ES_JAVA_HOME"
            )
        best = max(usable.items(), key=lambda kv: (kv[1], str(kv[0])))
        return best

    # -- lifecycle -------------------------------------------------------------------------
    def read_state(self) -> NodeState | None:
        if not self.state_file.is_file():
            return None
        try:
            return NodeState(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError):
            return None

    def password(self) -> str:
        """The elastic user's password, under the same rule as a user's secret files
        (`settings.read_secret_file`: 0600 or stricter, else refused with the chmod to run)."""
        from embedarena.settings import read_secret_file

        if not self.password_file.exists():
            raise NodeError(f"cannot read the node password at {self.password_file}: no such "
                            "file; has the node been started?")
        return read_secret_file(self.password_file, "managed node password")

    def pid(self) -> int | None:
        """The pid of a live ES process for this node, or None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and _is_our_es(pid, self.dir):
            return pid
        return None

    def start(self, port: int = DEFAULT_PORT, heap: str = DEFAULT_HEAP,
              distribution: Path | None = None, timeout: float = 180.0,
              progress: ProgressFn | None = None) -> tuple[NodeState, bool]:
        """Start the node and wait until it is healthy. Returns (state, already_running)."""
        pid = self.pid()
        state = self.read_state()
        if pid is not None and state is not None:
            return state, True
        if self.pid_file.exists():
            _say(progress, f"removing stale pid file {self.pid_file}")
            self.pid_file.unlink()
        if not re.fullmatch(r"\d+[mMgG]", heap):
            raise NodeError(f"heap must look like 512m or 2g, got {heap!r}")
        self._check_data_version(state)
        if self.member is not None and _port_in_use(self.member.transport_port):
            raise NodeError(f"transport port {self.member.transport_port} on 127.0.0.1 is "
                            "already in use by another process; start on another --port")
        if _port_in_use(port):
            raise NodeError(
                f"port {port} on 127.0.0.1 is already in use by another process; stop it or "
                f"start on another port: embedarena es start --port {port + 1}"
            )
        es_home = self.obtain(distribution, progress)
        java_home, java_major = self.find_java()
        run_as = _run_as_user()
        self._prepare_dirs(port, run_as)
        password = self._ensure_password()
        self._ensure_keystore(es_home, java_home, password, run_as)
        env = self._env(java_home, heap)
        _say(progress, f"starting Elasticsearch {self.version} on Java {java_major}"
             + (f" as user {run_as}" if run_as else ""))
        out_log = self.logs_dir / "embedarena-launch.log"
        with out_log.open("ab") as out:
            proc = subprocess.Popen(
                [str(es_home / "bin" / "elasticsearch"), "-d", "-p", str(self.pid_file)],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(self.dir), start_new_session=True, **_demote_kwargs(run_as),
            )
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise NodeError(f"Elasticsearch launcher did not return in {timeout:.0f} s; "
                                f"see {out_log}") from None
        if rc != 0:
            raise NodeError(f"Elasticsearch failed to start (exit {rc}): "
                            + self._log_tail_line(out_log))
        url = f"http://127.0.0.1:{port}"
        state = NodeState(version=self.version, url=url, port=port, pid=self.pid(),
                          java_home=str(java_home), java_major=java_major, run_as=run_as,
                          heap=heap)
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        self._wait_healthy(url, password, timeout, progress)
        state.pid = self.pid()
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        return state, False

    def _check_data_version(self, state: NodeState | None) -> None:
        """Refuse to start another major (or an older version) on data an earlier start wrote:
        9.x upgrades 8.x data for good, and no version reads data newer than itself."""
        if state is None or state.version == self.version or not self.data_dir.is_dir() \
                or not any(self.data_dir.iterdir()):
            return
        had, want = _version_tuple(state.version), _version_tuple(self.version)
        if had[0] != want[0] or want < had:
            raise NodeError(
                f"node '{self.name}' holds data written by Elasticsearch {state.version}; "
                f"starting {self.version} on it would "
                + ("upgrade it for good" if want > had else "fail (data newer than the node)")
                + f". Use another name (embedarena es start --name {self.name}-"
                f"{self.version.split('.')[0]} --version {self.version}) or delete its data "
                f"first (embedarena es stop --name {self.name} --purge)")

    def stop(self, purge: bool = False, timeout: float = 60.0) -> bool:
        """Stop the node (data kept unless purge). Returns whether a process was stopped."""
        pid = self.pid()
        stopped = False
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
            stopped = True
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.password_file.unlink()
        return stopped

    def status(self) -> NodeStatus:
        state = self.read_state()
        pid = self.pid()
        if state is None or pid is None:
            detail = "not started" if state is None else "stopped"
            return NodeStatus(False, state.url if state else None, None,
                              state.version if state else None, None, detail)
        try:
            r = httpx.get(f"{state.url}/_cluster/health", auth=(USER, self.password()),
                          timeout=5.0)
            health = r.json().get("status") if r.status_code == 200 else f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            health = None
            return NodeStatus(True, state.url, pid, state.version, health,
                              f"process running but not answering: {type(e).__name__}")
        return NodeStatus(True, state.url, pid, state.version, health, "running")

    def log_lines(self, n: int = 50) -> list[str]:
        log = self.logs_dir / "embedarena.log"
        if not log.is_file():
            return []
        with log.open(encoding="utf-8", errors="replace") as f:
            return f.readlines()[-n:]

    # -- internals -------------------------------------------------------------------------
    def _prepare_dirs(self, port: int, run_as: str | None) -> None:
        for d in (self.conf_dir, self.data_dir, self.logs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        src_conf = self.es_home / "config"
        for name in ("jvm.options", "log4j2.properties", "roles.yml", "users", "users_roles",
                     "role_mapping.yml"):
            if (src_conf / name).exists() and not (self.conf_dir / name).exists():
                shutil.copy2(src_conf / name, self.conf_dir / name)
        (self.conf_dir / "jvm.options.d").mkdir(exist_ok=True)
        if self.member is not None:
            certs = self.conf_dir / "certs"
            certs.mkdir(mode=0o700, exist_ok=True)
            for src in self.member.tls_files:
                shutil.copyfile(src, certs / src.name)
                os.chmod(certs / src.name, 0o600)
        (self.conf_dir / "elasticsearch.yml").write_text(render_config(
            cluster_name="embedarena" if self.member is None else self.member.cluster_name,
            node_name=self.name, port=port, data=self.data_dir, logs=self.logs_dir,
            member=self.member,
        ))
        if run_as:
            _check_reachable(self.dir, run_as)
            _chown_tree(self.dir, run_as)

    def _ensure_password(self) -> str:
        if self.password_file.is_file():
            return self.password()
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.password_file.parent, 0o700)
        pw = secrets.token_urlsafe(24)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pw + "\n")
        return pw

    def _ensure_keystore(self, es_home: Path, java_home: Path, password: str,
                         run_as: str | None) -> None:
        """Put the elastic user's bootstrap password in the keystore (first start only)."""
        if (self.conf_dir / "elasticsearch.keystore").exists():
            return
        env = self._env(java_home, "256m")
        tool = str(es_home / "bin" / "elasticsearch-keystore")
        for args, stdin in ((["create"], None), (["add", "-x", "bootstrap.password"], password)):
            proc = subprocess.run([tool, *args], env=env, input=stdin, text=True,
                                  capture_output=True, timeout=120, cwd=str(self.dir),
                                  **_demote_kwargs(run_as))
            if proc.returncode != 0:
                raise NodeError(f"elasticsearch-keystore {args[0]} failed: "
                                f"{(proc.stderr or proc.stdout).strip()[-300:]}")

    def _env(self, java_home: Path, heap: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JAVA_HOME", "ES_JAVA_OPTS")}
        env.update({
            "ES_JAVA_HOME": str(java_home),
            "ES_PATH_CONF": str(self.conf_dir),
            "ES_TMPDIR": str(self.tmp_dir),
            "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
            "HOME": str(self.dir),
        })
        return env

    def _wait_healthy(self, url: str, password: str, timeout: float,
                      progress: ProgressFn | None) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.pid() is None and time.monotonic() > deadline - timeout + 5:
                raise NodeError("Elasticsearch exited during start-up: " + self._log_tail_line())
            try:
                r = httpx.get(f"{url}/_cluster/health",
                              params={"wait_for_status": "yellow", "timeout": "2s"},
                              auth=(USER, password), timeout=5.0)
                if r.status_code == 200 and r.json().get("status") in ("green", "yellow"):
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                last = type(e).__name__
            time.sleep(1.0)
        raise NodeError(f"Elasticsearch at {url} not healthy after {timeout:.0f} s ({last}); "
                        + self._log_tail_line())

    def _log_tail_line(self, extra: Path | None = None) -> str:
        lines = self.log_lines(200)
        if extra is not None and extra.is_file():
            lines += extra.read_text(errors="replace").splitlines()[-50:]
        causes = [ln.strip() for ln in lines if re.search(r"\w(Exception|Error): ", ln)]
        errs = [ln.strip() for ln in lines if "ERROR" in ln]
        pick = (causes or errs or [ln.strip() for ln in lines] or ["(no log)"])[-1]
        pick = re.sub(r"^.*?(\w+(Exception|Error): )", r"\1", pick) if causes else pick
        return f"{pick[:400]} (logs: {self.logs_dir})"


@dataclass
class ClusterMember:
    """What one node of a local multi-node cluster needs in its configuration."""

    cluster_name: str
    transport_port: int
    seed_hosts: list[str]
    initial_masters: list[str]
    #: ca.crt, node.crt, node.key: copied 0600 into the node's config/certs
    tls_files: list[Path]


def render_config(cluster_name: str, node_name: str, port: int, data: Path, logs: Path,
                  member: ClusterMember | None = None) -> str:
    """elasticsearch.yml for one loopback-only node with security on.

    A pure function so tests can assert on it. A single node (member None) runs with
    `discovery.type: single-node` and no TLS: ES only enforces transport TLS when the node can
    form a multi-node cluster. A cluster member gets its own transport port, the seed hosts and
    initial masters of its cluster, and transport TLS with the certificates in config/certs.
    """
    lines = [
        "# written by embedarena; changes are overwritten at the next `embedarena es start`",
        f"cluster.name: {cluster_name}",
        f"node.name: {node_name}",
        "network.host: 127.0.0.1",
        f"http.port: {port}",
    ]
    if member is None:
        lines += ["transport.port: 9300-9399", "discovery.type: single-node"]
    else:
        lines += [
            f"transport.port: {member.transport_port}",
            "discovery.seed_hosts: [" + ", ".join(f'"{h}"' for h in member.seed_hosts) + "]",
            "cluster.initial_master_nodes: ["
            + ", ".join(f'"{n}"' for n in member.initial_masters) + "]",
        ]
    lines += [
        f"path.data: {data}",
        f"path.logs: {logs}",
        "xpack.security.enabled: true",
        "xpack.security.http.ssl.enabled: false",
    ]
    if member is None:
        lines.append("xpack.security.transport.ssl.enabled: false")
    else:
        lines += [
            "xpack.security.transport.ssl.enabled: true",
            "xpack.security.transport.ssl.verification_mode: full",
            "xpack.security.transport.ssl.key: certs/node.key",
            "xpack.security.transport.ssl.certificate: certs/node.crt",
            "xpack.security.transport.ssl.certificate_authorities: [certs/ca.crt]",
        ]
    lines += ["action.destructive_requires_name: true", ""]
    return "\n".join(lines)


# -- helpers ---------------------------------------------------------------------------------
def _say(progress: ProgressFn | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _maven_repo_local() -> Path:
    env = os.environ.get("MAVEN_REPO_LOCAL")
    return Path(env) if env else Path.home() / ".m2" / "repository"


def _java_major(java_home: Path) -> int | None:
    if not (java_home / "bin" / "java").exists():
        return None
    release = java_home / "release"
    text = release.read_text(errors="replace") if release.is_file() else ""
    m = re.search(r'JAVA_VERSION="(\d+)(?:\.(\d+))?', text)
    if m:
        major = int(m.group(1))
        return int(m.group(2)) if major == 1 and m.group(2) else major
    try:
        out = subprocess.run([str(java_home / "bin" / "java"), "-version"], capture_output=True,
                             text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("-")[0].split("."))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_our_es(pid: int, node_dir: Path) -> bool:
    """Guard against a recycled pid: the process must be a JVM started for this node."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    return "org.elasticsearch" in cmdline and str(node_dir) in environ


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A currently free loopback port (for tests and `--port 0`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_user() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    user = os.environ.get("EMBEDARENA_ES_RUN_AS", "nobody")
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise NodeError(f"Elasticsearch refuses to run as root and user {user!r} does not "
                        "exist; set EMBEDARENA_ES_RUN_AS to an unprivileged user") from None
    return user


def _demote_kwargs(run_as: str | None) -> dict[str, Any]:
    if not run_as:
        return {}
    pw = pwd.getpwnam(run_as)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _check_reachable(path: Path, user: str) -> None:
    """Every ancestor must be searchable by `user`, or ES cannot open its own files."""
    for parent in list(path.parents)[::-1]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise NodeError(
                f"Elasticsearch runs as user {user!r} (it refuses root), who cannot enter "
                f"{parent}; set EMBEDARENA_HOME to a directory outside it "
                "(as root the default is /var/lib/embedarena)"
            )


def _chown_tree(root: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for fn in filenames:
            os.chown(os.path.join(dirpath, fn), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _make_world_readable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o755)
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            os.chmod(p, os.stat(p).st_mode | 0o444)


def iter_nodes(home: Path | None = None) -> Iterator[ManagedNode]:
    base = (home or paths.home()) / "nodes"
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if d.is_dir():
                yield ManagedNode(d.name, home=home)

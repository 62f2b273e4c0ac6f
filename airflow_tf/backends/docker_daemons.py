"""The Docker daemons of a DockerBackend (where each is, how to connect, which address nodes use)
and the checks of its list and mount settings.

Client handling is the docker provider's ``DockerHook`` (ping, TLS, API-version detection);
connections only locate daemons here. The docker SDK is imported inside functions: DAG files
construct DockerBackend at every parse.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from airflow_tf.cluster.checks import check_string_list
from airflow_tf.cluster.errors import SpecError

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
URL_SCHEMES = ("unix", "tcp", "http", "https", "ssh")
RESERVED_ROOT = "/airflow_tf"  # the node runtime's tree inside every container


@dataclasses.dataclass(frozen=True)
class Daemon:
    setting: str  # how the user named it, for messages: "docker_urls[1]", "docker_conn_ids[0] ('gpu1')"
    url: str
    conn_id: str | None = None
    tls: dict[str, Any] | None = None  # DockerHook.construct_tls_config kwargs (from a connection)
    address: str | None = None  # host_addresses override

    @property
    def is_local(self) -> bool:
        """Runs on this machine: a unix socket or a loopback TCP address."""
        parts = urlsplit(self.url)
        return parts.scheme in ("unix", "npipe") or (parts.hostname or "") in LOCAL_HOSTS

    @property
    def host(self) -> str:
        """The address other nodes reach this daemon's containers at (host networking)."""
        if self.address:
            return self.address
        return "127.0.0.1" if self.is_local else urlsplit(self.url).hostname

    @property
    def key(self) -> tuple[str, str | None]:
        return self.url, self.conn_id


def check_url(setting: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES or not (parts.hostname or parts.path):
        raise SpecError(f"{setting} must be a URL like unix:///var/run/docker.sock or tcp://HOST:2375, got {url!r}")
    return url


def url_from_connection(conn) -> str:
    """A daemon URL from an Airflow connection: ``host`` is a URL or a host name (+ ``port``)."""
    host = (conn.host or "").strip()
    if not host:
        raise SpecError(f"docker_conn_ids: connection {conn.conn_id!r} has no host (the Docker daemon URL)")
    if "://" not in host:
        return f"tcp://{host}:{conn.port or 2375}"
    parts = urlsplit(host)
    if conn.port and parts.port is None and parts.scheme in ("tcp", "http", "https"):
        return f"{parts.scheme}://{parts.hostname}:{conn.port}{parts.path}"
    return host


def from_connection(setting: str, conn_id: str, address: str | None) -> Daemon:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    setting = f"{setting} ({conn_id!r})"
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise SpecError(f"{setting}: no Airflow connection with this id is defined") from None
    extra = conn.extra_dejson
    tls = None
    if extra.get("tls_ca_cert") or extra.get("tls_client_cert"):
        tls = {"ca_cert": extra.get("tls_ca_cert"), "client_cert": extra.get("tls_client_cert"),
               "client_key": extra.get("tls_client_key"), "verify": extra.get("tls_verify", True)}
    return Daemon(setting, url_from_connection(conn), conn_id=conn_id, tls=tls, address=address)


def is_plaintext_tcp(daemon: Daemon) -> bool:
    """TCP to another machine without TLS: anyone on the path can run containers as root there."""
    scheme = urlsplit(daemon.url).scheme
    return scheme in ("tcp", "http") and not daemon.tls and not daemon.is_local


def check_transport(daemons: list[Daemon], insecure_tcp: bool) -> list[Daemon]:
    for daemon in daemons:
        if is_plaintext_tcp(daemon) and not insecure_tcp:
            how = ("the connection extras tls_ca_cert, tls_client_cert and tls_client_key" if daemon.conn_id
                   else "an https:// URL, ssh://user@host, or docker_conn_ids with TLS extras")
            raise SpecError(
                f"{daemon.setting} {daemon.url!r} is plaintext TCP to another machine: whoever can reach it can run "
                f"root containers there. Use TLS: {how}; or set insecure_tcp=True to accept plaintext TCP"
            )
    return daemons


def check_mixed(daemons: list[Daemon], insecure_tcp: bool = False) -> list[Daemon]:
    check_transport(daemons, insecure_tcp)
    # 127.0.0.1 as a cluster address would point a remote node at itself.
    local = [d for d in daemons if d.is_local and not d.address]
    if local and len(local) != len(daemons):
        raise SpecError(
            f"{local[0].setting} is a local Docker daemon next to remote ones: its containers' address 127.0.0.1 "
            "is not reachable from the other hosts; set host_addresses (one per daemon)"
        )
    return daemons


def connect(daemon: Daemon, timeout: int):
    """The provider hook's low-level ``docker.APIClient`` for a daemon."""
    from airflow.providers.docker.hooks.docker import DockerHook

    tls = DockerHook.construct_tls_config(**daemon.tls) if daemon.tls else None
    if tls:
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on many machines) replace a
        # session's CA file, so the hook's client would check the daemon against the system CAs
        # and fail. A client whose requests always use the daemon's CA; the hook's TLS config.
        try:
            client = _client_with_own_ca()(base_url=daemon.url, version="auto", tls=tls, timeout=timeout)
            client.ping()
            return client
        except Exception as exc:  # noqa: BLE001 - named like the hook's failure below
            raise ConnectionError(f"DockerBackend cannot reach the Docker daemon {daemon.url} ({daemon.setting}): "
                                  f"{exc}") from exc
    # docker_conn_id=None: the provider's Docker connection is a registry login, and nothing is
    # ever pulled here; our connections only locate the daemon.
    hook = DockerHook(docker_conn_id=None, base_url=daemon.url, tls=tls, timeout=timeout)
    try:
        return hook.get_conn()
    except Exception as exc:  # the hook logs the cause and raises a generic error
        raise ConnectionError(f"DockerBackend cannot reach the Docker daemon {daemon.url} ({daemon.setting}): {exc}") \
            from exc


def _client_with_own_ca():
    import docker

    class OwnCAClient(docker.APIClient):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings["verify"] = self.verify  # the daemon's CA (TLSConfig set it), never the environment's
            return settings

    return OwnCAClient


def parse_mount(spec: Any, index: int) -> str:
    if not isinstance(spec, str):
        raise SpecError(f"mounts[{index}] must be a string 'host_path:container_path[:ro|rw]', got {spec!r}")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise SpecError(f"mounts[{index}] must be 'host_path:container_path[:ro|rw]', got {spec!r}")
    source, target = parts[0], parts[1]
    if not source.startswith("/") or not target.startswith("/"):
        raise SpecError(f"mounts[{index}]: both paths must be absolute, got {spec!r}")
    if target.rstrip("/") == RESERVED_ROOT or target.startswith(RESERVED_ROOT + "/"):
        raise SpecError(f"mounts[{index}]: {RESERVED_ROOT} is reserved for the node runtime, got {spec!r}")
    return spec if len(parts) == 3 else f"{spec}:rw"


def optional_list(field: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"{field} must be a non-empty list of strings or None, got {value!r}")
    return check_string_list(field, value, allow_none=False)

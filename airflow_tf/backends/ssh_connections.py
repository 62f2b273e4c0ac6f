"""Airflow SSH connections -> the ssh provider's ``SSHHook``, with host keys always checked.

The hook checks a host key only when it knows one: from the connection's ``host_key`` extra or
from ``~/.ssh/known_hosts``. Some provider versions default to ``no_host_key_check=True``, and
``allow_host_key_change`` makes paramiko accept any key it has no entry for. A training backend
that runs code as the connection's user must not drift into that, so we decide the policy here,
before any connection is opened, and refuse a connection that pins no key unless it turns the
check off explicitly.

Imported lazily (it imports paramiko and the provider): ``import airflow_tf`` must stay cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import paramiko
from airflow.providers.ssh.hooks.ssh import SSHHook

from airflow_tf.cluster.errors import SpecError

if TYPE_CHECKING:
    from airflow.sdk import Connection

HOW_TO_PIN = (
    "set the connection extra 'host_key' to the server's public host key (e.g. the key part of "
    "`ssh-keyscan -t ed25519 HOST`), or 'known_hosts' to a known_hosts file listing it; to accept "
    "any key instead (not recommended: open to man-in-the-middle), set 'no_host_key_check': true"
)


def _true(value) -> bool:
    return str(value).strip().lower() == "true"


def _known_hosts_key(path: str, host: str, port: int) -> paramiko.PKey | None:
    """The key a known_hosts file lists for ``host`` (``[host]:port`` when not port 22)."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return None
    keys = paramiko.HostKeys(path)
    entry = keys.lookup(host if port == 22 else f"[{host}]:{port}")
    return next(iter(entry.values())) if entry else None


def _get_connection(conn_id: str, setting: str) -> Connection:
    try:
        return SSHHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends, across Airflow versions
        raise SpecError(f"SSHBackend {setting} = {conn_id!r}: no such Airflow connection ({exc})") from None


def make_hook(conn_id: str, *, setting: str, connect_attempts: int, connect_timeout: float) -> SSHHook:
    """An ``SSHHook`` for ``conn_id`` that will verify the server's host key.

    ``setting`` names where the id came from (``ssh_conn_ids[1]``) for error messages.
    Raises ``SpecError`` naming the connection when it is missing or pins no host key.
    """
    conn = _get_connection(conn_id, setting)
    if conn.conn_type and conn.conn_type != "ssh":
        raise SpecError(f"SSHBackend {setting} = {conn_id!r} is a {conn.conn_type!r} connection, not 'ssh'")
    if not conn.host:
        raise SpecError(f"SSHBackend {setting} = {conn_id!r} has no host")
    extra = conn.extra_dejson
    port = conn.port or 22
    where = f"SSHBackend {setting} = {conn_id!r} ({conn.host}:{port})"
    # The deprecated spelling still counts as an explicit opt-out.
    opted_out = _true(extra.get("no_host_key_check", extra.get("ignore_hostkey_verification", False)))
    pinned = None
    if not opted_out and not extra.get("host_key"):
        if extra.get("known_hosts"):
            pinned = _known_hosts_key(extra["known_hosts"], conn.host, port)
            if pinned is None:
                raise SpecError(f"{where}: its known_hosts file {extra['known_hosts']!r} has no key for this host "
                                f"(or cannot be read); "
                                f"{HOW_TO_PIN}")
        elif _true(extra.get("allow_host_key_change")) or _known_hosts_key("~/.ssh/known_hosts", conn.host, port) is None:
            # allow_host_key_change skips ~/.ssh/known_hosts and accepts unknown keys: nothing would be checked.
            raise SpecError(f"{where}: no host key to check the server against; {HOW_TO_PIN}")
    try:
        # no_host_key_check passed explicitly, so no provider default can turn the check off.
        hook = SSHHook(ssh_conn_id=conn_id, conn_retry_attempts=connect_attempts, no_host_key_check=opted_out)
    except ValueError as exc:  # e.g. host_key and no_host_key_check both set, unsupported key type
        raise SpecError(f"{where}: {exc}") from None
    if pinned is not None:
        hook.host_key = pinned  # get_conn() adds it to the client's known keys, as for a host_key extra
    if hook.conn_timeout is None:
        hook.conn_timeout = connect_timeout  # paramiko's default waits for the OS TCP timeout (minutes)
    if opted_out:
        hook.log.warning("%s: host key check turned off by the connection (no_host_key_check)", where)
    return hook

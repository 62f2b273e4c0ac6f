"""Every rule a DockerBackend setting must meet, checked when the backend is constructed (at DAG
parse time), each error naming the setting and what is allowed.

Privileges are only given when asked for: a bind mount of ``/``, of the Docker socket or of
another host-control path (``HOST_CONTROL_PATHS``) needs ``allow_privileged_mounts=True``;
plaintext TCP to a daemon on another machine needs ``insecure_tcp=True`` (see
``docker_daemons.check_transport``); containers drop ``DEFAULT_CAP_DROP`` unless ``cap_drop``
says otherwise. docs/security.md lists the rules and why.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from airflow_tf.backends.docker_daemons import check_url, optional_list, parse_mount
from airflow_tf.cluster.checks import check_bool, check_no_nul, check_positive_int, describe
from airflow_tf.cluster.errors import SpecError

# Host paths whose bind mount hands the container the host: the root, the container engines'
# sockets and state, the kernel's interfaces, devices, boot, configuration and root's home, and
# the init system's and D-Bus's sockets. Read-only does not help (a socket stays usable, shadow
# stays readable). A mount of one of these, or of a directory holding one, needs
# allow_privileged_mounts=True. /usr (programs) and /home are not on the list.
HOST_CONTROL_PATHS = (
    "/", "/var/run/docker.sock", "/run/docker.sock", "/var/run/docker", "/run/docker", "/var/lib/docker",
    "/run/containerd", "/var/run/containerd", "/var/lib/containerd", "/run/podman", "/var/lib/containers",
    "/run/crio", "/var/run/crio", "/proc", "/sys", "/dev", "/boot", "/etc", "/root", "/run/systemd", "/var/run/dbus",
    "/run/dbus",
)

# Linux capabilities Docker grants by default that no strategy needs: not TF gRPC, Gloo, NCCL,
# the launcher, pip, nor the sshd a Horovod-MPI container runs (that needs SETUID, SETGID,
# SYS_CHROOT, AUDIT_WRITE and, below port 1024, NET_BIND_SERVICE: all kept).
DEFAULT_CAP_DROP = ("MKNOD", "NET_RAW", "SETFCAP", "SETPCAP")
CAPABILITIES = frozenset({
    "ALL", "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT",
    "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "WAKE_ALARM",
})
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?")


def host_control_path(source: str) -> str | None:
    """The host-control path that the bind source ``source`` is, or holds (None: neither)."""
    path = posixpath.normpath(source)
    path = "/" if path == "//" else path  # normpath keeps a leading '//'
    for control in HOST_CONTROL_PATHS:
        if path == control or control.startswith(path.rstrip("/") + "/"):
            return control
    return None


def check_mounts(value: Any, allow_privileged: bool) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(f"mounts must be a list of 'host_path:container_path[:ro|rw]' strings, got {describe(value)}")
    mounts = []
    for i, spec in enumerate(value):
        mount = parse_mount(spec, i)
        check_no_nul(f"mounts[{i}]", mount)
        control = host_control_path(mount.split(":")[0])
        if control and not allow_privileged:
            held = "" if control == posixpath.normpath(mount.split(":")[0]) else f", which holds {control}"
            raise SpecError(
                f"mounts[{i}] {spec!r} mounts a host-control path{held}: a container with it can take over the "
                "host. Mount a narrower directory (the data set, a cache), or set allow_privileged_mounts=True "
                "if the job really needs it"
            )
        mounts.append(mount)
    return mounts


def check_capabilities(field: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(f"{field} must be a list of Linux capability names such as ['NET_RAW'], got {describe(value)}")
    names = []
    for i, item in enumerate(value):
        name = item.upper().removeprefix("CAP_") if isinstance(item, str) else None
        if name not in CAPABILITIES:
            raise SpecError(f"{field}[{i}] must be a Linux capability name (e.g. 'NET_RAW', 'SYS_PTRACE', "
                            f"'ALL'), got {item!r}")
        names.append(name)
    return names


def check_settings(backend) -> dict[str, Any]:
    """Check every setting of ``backend``; the normalised values to store back."""
    image = backend.image
    if not isinstance(image, str) or not image.strip() or any(c.isspace() or c == "\0" for c in image):
        raise SpecError(f"image must be an image reference like 'tensorflow/tensorflow:2.21.0', got {image!r}")
    urls = optional_list("docker_urls", backend.docker_urls)
    conn_ids = optional_list("docker_conn_ids", backend.docker_conn_ids)
    if urls is None and conn_ids is None:
        raise SpecError("DockerBackend needs docker_urls (e.g. ['unix:///var/run/docker.sock']) or docker_conn_ids")
    if urls is not None and conn_ids is not None:
        raise SpecError("give docker_urls or docker_conn_ids, not both")
    for i, url in enumerate(urls or []):
        check_url(f"docker_urls[{i}]", url)
    count = len(urls or conn_ids)
    addresses = optional_list("host_addresses", backend.host_addresses)
    if addresses is not None and len(addresses) != count:
        raise SpecError(f"host_addresses must have one address per daemon ({count}), got {addresses!r}")
    shm = backend.shm_size
    if shm is not None and (isinstance(shm, bool) or not (isinstance(shm, (int, str)) and str(shm).strip())):
        raise SpecError(f"shm_size must be bytes (int) or a size like '2g', got {shm!r}")
    env = backend.environment
    if env is not None and not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                              for k, v in env.items())):
        raise SpecError("environment must be a dict of strings to strings")
    for key, item in (env or {}).items():
        if not key or "=" in key or "\0" in key + item:
            raise SpecError(f"environment[{key!r}]: names must be non-empty without '=' or NUL, values without NUL")
    if backend.user is not None and (not isinstance(backend.user, str) or not USER.fullmatch(backend.user)):
        raise SpecError(f"user must be 'name', 'uid' or 'uid:gid' (letters, digits, _ . -), got {backend.user!r}")
    python = backend.python
    if not isinstance(python, str) or not python.strip() or "\0" in python:
        raise SpecError(f"python must be the interpreter's name or path in the image, got {python!r}")
    if backend.gpus_per_host is not None:
        check_positive_int("gpus_per_host", backend.gpus_per_host)
    for name in ("allow_shared_hosts", "allow_privileged_mounts", "insecure_tcp"):
        check_bool(name, getattr(backend, name))
    out = backend.output_dir
    if out is not None and (not isinstance(out, str) or not out.startswith("/") or "\0" in out):
        raise SpecError(f"output_dir must be an absolute path on the daemons' hosts, got {out!r}")
    check_positive_int("timeout", backend.timeout)
    return {
        "docker_urls": urls, "docker_conn_ids": conn_ids, "host_addresses": addresses,
        "mounts": check_mounts(backend.mounts, backend.allow_privileged_mounts),
        "cap_drop": check_capabilities("cap_drop", backend.cap_drop),
        "cap_add": check_capabilities("cap_add", backend.cap_add),
    }

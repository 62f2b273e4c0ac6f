"""Where a node runs. One small interface; handles are plain JSON so they travel through XCom and
into a trigger that may run in another process (the triggerer).

Every backend is a frozen dataclass of its settings, validated in ``__post_init__``: it is
rebuilt from ``serialize()`` wherever it is needed, so its fields must be JSON-able settings;
clients and connections live in per-object caches that are never serialized.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

from airflow_tf.cluster.plan import NodeLaunch

Handle = dict[str, Any]


class NodeState(dict):
    """``{"running": bool, "exit_code": int | None, "ended_at": float | None}``.

    A node that is not running and has no exit code was lost (its runtime was killed hard).
    """

    @classmethod
    def running_now(cls) -> "NodeState":
        return cls(running=True, exit_code=None, ended_at=None)

    @classmethod
    def ended(cls, exit_code: int | None, ended_at: float | None) -> "NodeState":
        return cls(running=False, exit_code=exit_code, ended_at=ended_at)


def cache() -> Any:
    """A per-object cache field of a backend dataclass: not a setting, never serialized."""
    return dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)


def secrets_payload(secrets: Mapping[str, str] | None) -> bytes | None:
    return json.dumps(dict(secrets)).encode() if secrets else None


class Backend(abc.ABC):
    """Start a node detached, poll it, read its log from an offset, stop it."""

    # Its nodes can be watched and stopped only from the machine that started them (LocalBackend):
    # on a multi-host executor the group must be pinned to one host (operators/placement.py).
    single_host: ClassVar[bool] = False

    def settings(self) -> dict[str, Any]:
        """The constructor kwargs that rebuild this backend (its dataclass fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def serialize(self) -> dict[str, Any]:
        cls = type(self)
        return {"classpath": f"{cls.__module__}.{cls.__qualname__}", "kwargs": self.settings()}

    @staticmethod
    def deserialize(data: dict[str, Any]) -> "Backend":
        module, _, name = data["classpath"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"{data['classpath']} is not an airflow_tf Backend")
        return cls(**data["kwargs"])

    @abc.abstractmethod
    def hosts(self, node_count: int) -> list[str]:
        """The address other nodes reach each node at, one per node (also the pre-flight)."""

    def free_ports(self, host: str, count: int) -> list[int] | None:
        """Ports free on ``host`` right now, or None to let the planner use its defaults."""
        return None

    @abc.abstractmethod
    def start(self, launch: NodeLaunch, source_directory: str, secrets: Mapping[str, str] | None = None) -> Handle:
        """Start one node detached (it outlives the calling task) as the node's next try, and
        return its handle. Whatever an earlier try of this node left running is stopped first;
        its files are kept (``runtime.node_files``: one directory, or container, per try).

        ``secrets`` (secret_environment_variables' values) reach the node as the private file
        ``runtime.node_files.SECRETS``, which its launcher reads and deletes first thing: never in
        node.json, a container's config, a command line or a log.
        """

    def find_node(self, job_id: str, node_index: int) -> Handle | None:
        """The handle of the node's latest try, when one was started (None: none, or this backend
        cannot tell). A re-run launch task re-attaches to it when it is healthy and runs the same
        job attempt (``NodeLaunch.attempt``) instead of starting a duplicate."""
        return None

    @abc.abstractmethod
    def poll(self, handle: Handle) -> NodeState: ...

    @abc.abstractmethod
    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        """Complete lines written since ``offset``, and the offset to read from next."""

    @abc.abstractmethod
    def read_tail(self, handle: Handle, lines: int) -> list[str]: ...

    @abc.abstractmethod
    def read_file(self, handle: Handle, name: str) -> str | None:
        """A small file the node runtime or training helpers wrote in the node's directory."""

    def read_from(self, handle: Handle, name: str, offset: int, limit: int) -> bytes | None:
        """Up to ``limit`` bytes of the node file ``name`` from byte ``offset``; None while the
        file does not exist. How the trigger reads growing files (metrics): a poll costs the new
        bytes, not the file's length. This fallback reads the whole file (override it)."""
        text = self.read_file(handle, name)
        return None if text is None else text.encode()[offset:offset + limit]

    def write_file(self, handle: Handle, name: str, data: bytes) -> None:
        """Replace a small file in the node's directory at once: the trigger keeps what it has
        streamed there, so a restarted trigger goes on where the last one stopped."""
        raise NotImplementedError(f"{type(self).__name__} cannot write files into a node's directory")

    def watch_problem(self, handle: Handle) -> str | None:
        """Why this process cannot watch the node at all (None: it can). A node it cannot see
        (a single-host backend's files on another machine) must never look like a node that died."""
        return None

    def exit_descriptor(self, handle: Handle) -> int | None:
        """A file descriptor that becomes readable when the node's launcher exits, owned (and
        closed) by the caller; None: this backend has none and the trigger hears of the exit at
        its next poll. Only a wake-up hint: the outcome is still read by ``poll``."""
        return None

    @abc.abstractmethod
    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        """Stop the node and everything it started; a no-op when it already ended. Its state,
        log and files stay readable until ``stop_job``."""

    @abc.abstractmethod
    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        """Stop every node of a job, found without handles (the teardown), and release what the
        backend holds for it. Returns the indexes of nodes that were still running."""

    def output_files(self, handle: Handle) -> Iterator[tuple[str, BinaryIO]]:
        """The chief's outputs folder, file by file: its path relative to the folder (POSIX) and
        the file open for binary reading. How ``output_uri`` copies them (results/outputs.py);
        ``handle`` is the chief's, read before the teardown releases the job."""
        raise NotImplementedError(f"{type(self).__name__} cannot read a job's outputs, so output_uri cannot be used "
                                  "with it; let the training script write them to the target itself")

    @abc.abstractmethod
    def output_location(self, job_id: str) -> str:
        """Where the chief's outputs (model, curves) end up, as a user would open it."""

    def host_path(self, handle: Handle, path: str) -> str:
        """A path a node wrote (e.g. the saved model's), as a user would open it after the job.

        The same path for backends whose nodes see the host's file system; container backends
        translate their in-container paths.
        """
        return path

"""Field checks shared by every spec and backend: each names the field and what is allowed, so a
DAG author sees ``node_count must be an integer >= 1, got 0`` when the DAG file is parsed."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from airflow_tf.cluster.errors import SpecError

SCALAR_TYPES = (str, int, float, bool)
E = TypeVar("E", bound=enum.Enum)


def describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_positive_int(field: str, value: Any, maximum: str | None = None) -> int:
    """An int >= 1; ``maximum`` names the ``[airflow_tf]`` limit it must not exceed (``cluster.limits``)."""
    # bool is an int subclass; True nodes is a typo, not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field} must be an integer >= 1, got {describe(value)}")
    if value < 1:
        raise SpecError(f"{field} must be an integer >= 1, got {value}")
    if maximum is not None:
        from airflow_tf.cluster.limits import check_limit

        check_limit(field, value, maximum)
    return value


def check_non_negative_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{field} must be an integer >= 0, got {describe(value)}")
    return value


def coerce_positive_int(field: str, value: Any, maximum: str | None = None) -> int:
    """Like check_positive_int, but accepts the digit strings a rendered template produces."""
    if isinstance(value, str) and value.strip().removeprefix("-").isdecimal() and len(value.strip()) < 20:
        value = int(value.strip())
    return check_positive_int(field, value, maximum)


def check_positive_number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpecError(f"{field} must be a number > 0, got {describe(value)}")
    return value


def check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{field} must be True or False, got {describe(value)}")
    return value


def check_choice(field: str, value: Any, choices: type[E]) -> E:
    """A member of the StrEnum ``choices`` (given as the member or its value)."""
    try:
        return choices(value)
    except ValueError:
        raise SpecError(f"{field} must be one of {[c.value for c in choices]}, got {value!r}") from None


def check_no_nul(field: str, value: str) -> str:
    """No NUL byte: it cannot pass through argv, the environment or a file name, and truncates
    the value silently where C code reads it."""
    if "\0" in value:
        raise SpecError(f"{field} must not contain a NUL byte (\\x00), got {value!r}")
    return value


def check_string_list(field: str, value: Any, *, allow_none: bool = True) -> list[str]:
    if value is None and allow_none:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(f"{field} must be a list of strings, got {describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"{field}[{i}] must be a non-empty string, got {describe(item)}")
        check_no_nul(f"{field}[{i}]", item)
    return list(value)


# What a path or program name handed to a remote shell may contain: a shell gives none of these
# a meaning, inside double quotes or not ($, `, ", ', \\, spaces, globs and ; | & < > never pass).
SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-@%,=:")


def check_shell_safe(field: str, value: Any, what: str) -> str:
    """A path or name that reaches a remote shell: only ``SHELL_SAFE`` characters (plus a
    leading ``~/``), so that no quoting, by us or by a wrapper we do not own, can go wrong."""
    body = value[2:] if isinstance(value, str) and value.startswith("~/") else value
    if not isinstance(value, str) or not body or not set(body) <= SHELL_SAFE:
        bad = sorted(set(body) - SHELL_SAFE) if isinstance(body, str) else []
        raise SpecError(
            f"{field} must be {what} made of letters, digits and / . _ + - @ % , = : only"
            f"{f' (not {bad!r})' if bad else ''}, got {value!r}"
        )
    return value


def check_name(field: str, value: Any, what: str, allowed: str = "_.:-") -> str:
    """A plain name (letters, digits and ``allowed``): e.g. an interface or connection id."""
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in allowed for c in value):
        raise SpecError(f"{field} must be {what}, got {value!r}")
    return value


def check_source(source_directory: Any, entry_script: Any, field: str = "entry_script") -> None:
    if not isinstance(source_directory, (str, os.PathLike)) or not str(source_directory):
        raise SpecError(f"source_directory must be a path to a directory, got {describe(source_directory)}")
    check_no_nul("source_directory", str(source_directory))
    if not os.path.isdir(source_directory):
        raise SpecError(f"source_directory must be an existing directory, got {str(source_directory)!r}")
    if not isinstance(entry_script, str) or not entry_script:
        raise SpecError(f"{field} must be a path relative to source_directory, got {describe(entry_script)}")
    check_no_nul(field, entry_script)
    root = os.path.realpath(source_directory)
    script = os.path.realpath(os.path.join(root, entry_script))
    if os.path.isabs(entry_script) or os.path.commonpath([root, script]) != root or script == root:
        raise SpecError(f"{field} must be a relative path inside source_directory, got {entry_script!r}")
    if not os.path.isfile(script):
        raise SpecError(f"{field} {entry_script!r} not found under source_directory {str(source_directory)!r}")


def check_hosts(node_count: int, hosts: Sequence[str]) -> list[str]:
    """What a backend offers the planner: one host name or IPv4 address (no port) per node."""
    if len(hosts) != node_count:
        raise SpecError(f"node_count is {node_count} but the backend offered {len(hosts)} host(s): {list(hosts)}")
    for i, host in enumerate(hosts):
        if not isinstance(host, str) or not host or ":" in host or any(c.isspace() for c in host):
            raise SpecError(f"host {i} must be a hostname or IPv4 address without port, got {host!r}")
    return list(hosts)


def check_mapping(field: str, value: Any) -> Mapping:
    if not isinstance(value, Mapping):
        raise SpecError(f"{field} must be a dict, got {describe(value)}")
    return value

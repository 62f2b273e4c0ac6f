"""Resolving ``secret_environment_variables`` references on the Airflow side, and masking.

Lookups go through the Task SDK (``Variable.get``, ``BaseHook.get_connection``), so whatever
secrets backend the deployment configured answers them, in a task or in the triggerer. Every
value found is registered with Airflow's secrets masker at once: task logs, rendered fields and
the node log lines the trigger streams show ``***`` instead. Errors name the variable and the
reference, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.secrets import parse_reference

MASKED = "***"


def mask(values: Iterable[str]) -> None:
    """Register values with Airflow's masker (it ignores values under its minimum length)."""
    from airflow.sdk.log import mask_secret

    for value in values:
        if isinstance(value, str) and value:
            mask_secret(value)


def _lookup(name: str, text: str) -> str:
    from airflow.sdk import BaseHook, Variable

    ref = parse_reference(name, text)
    where = f"secret_environment_variables[{name!r}] = {text!r}"
    try:
        if ref.kind == "var":
            value = Variable.get(ref.key)
        else:
            conn = BaseHook.get_connection(ref.key)
            if ref.field == "uri":
                value = conn.get_uri()
            elif ref.field.startswith("extra."):
                value = conn.extra_dejson.get(ref.field[len("extra."):])
            else:
                value = getattr(conn, ref.field)
    except Exception as exc:  # noqa: BLE001 - not found, in any backend; never echo a value
        what = "Variable" if ref.kind == "var" else "Connection"
        raise SpecError(f"{where}: no Airflow {what} {ref.key!r} could be read ({type(exc).__name__})") from None
    if value is None or value == "":
        raise SpecError(f"{where}: the Connection {ref.key!r} has no {ref.field}")
    return str(value)


def resolve(references: Mapping[str, str]) -> dict[str, str]:
    """name -> value for every reference, each value masked from here on."""
    values = {name: _lookup(name, text) for name, text in (references or {}).items()}
    mask(values.values())
    return values


def redact(line: str, values: Iterable[str]) -> str:
    """Replace every secret value in a line (explicitly: a stream of node lines must not
    depend on the logging pipeline's masker alone)."""
    for value in values:
        if value:
            line = line.replace(value, MASKED)
    return line

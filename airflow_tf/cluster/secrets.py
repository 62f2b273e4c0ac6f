"""``secret_environment_variables``: environment variables whose values are Airflow secrets,
given by reference so that no value is ever in the DAG, the plan, XCom or a node's plan file.

A reference names where Airflow keeps the value; Airflow's secrets backends (environment,
metastore, Vault, ...) answer the lookup, so every backend a deployment configured works:

    "var:KEY"                an Airflow Variable
    "conn:CONN_ID"           a Connection's password
    "conn:CONN_ID:FIELD"     a Connection's login, password, host, port, schema or uri
    "conn:CONN_ID:extra.KEY" one key of a Connection's extra

Pure: parsing and checks only (resolution is ``operators/secrets.py``, on the Airflow side).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.checks import describe
from airflow_tf.cluster.errors import SpecError

CONNECTION_FIELDS = ("login", "password", "host", "port", "schema", "uri")
FORMS = '"var:KEY", "conn:CONN_ID", "conn:CONN_ID:FIELD" (FIELD: ' + ", ".join(CONNECTION_FIELDS) + ' or extra.KEY)'


@dataclasses.dataclass(frozen=True)
class SecretReference:
    kind: str  # "var" or "conn"
    key: str  # the Variable's key or the Connection's id
    field: str = "password"  # for connections

    def __str__(self) -> str:
        return f"var:{self.key}" if self.kind == "var" else f"conn:{self.key}:{self.field}"


def parse_reference(name: str, reference: Any) -> SecretReference:
    where = f"secret_environment_variables[{name!r}]"
    if not isinstance(reference, str) or not reference.strip():
        raise SpecError(f"{where} must be a reference string: {FORMS}; got {describe(reference)}")
    kind, _, rest = reference.partition(":")
    if kind == "var" and rest and not any(c.isspace() or c == "\0" for c in rest):
        return SecretReference("var", rest)
    if kind == "conn" and rest:
        conn_id, _, field = rest.partition(":")
        field = field or "password"
        valid_field = field in CONNECTION_FIELDS or (field.startswith("extra.") and len(field) > len("extra."))
        if conn_id and valid_field and not any(c.isspace() or c == "\0" for c in conn_id):
            return SecretReference("conn", conn_id, field)
    raise SpecError(f"{where} must be a reference: {FORMS}; got {reference!r}")


def check_secret_environment(value: Any) -> dict[str, str]:
    """name -> reference; names follow the environment_variables rules (none the plan owns)."""
    from airflow_tf.cluster.spec import RESERVED_ENV, RESERVED_ENV_PREFIXES  # (spec imports this module)

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"secret_environment_variables must be a dict of name -> reference ({FORMS}), "
                        f"got {describe(value)}")
    for key, reference in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise SpecError(f"secret_environment_variables keys must be non-empty names without '=', got {describe(key)}")
        if key.startswith(RESERVED_ENV_PREFIXES) or key in RESERVED_ENV:
            raise SpecError(f"secret_environment_variables[{key!r}] is set by airflow-tf's plan and cannot be overridden")
        parse_reference(key, reference)
    return {key: str(reference) for key, reference in value.items()}


def check_disjoint(environment: Mapping[str, Any], secrets: Mapping[str, Any]) -> None:
    both = sorted(set(environment) & set(secrets))
    if both:
        raise SpecError(f"{both} are in both environment_variables and secret_environment_variables; "
                        "give each variable once")

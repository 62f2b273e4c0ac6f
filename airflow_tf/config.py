"""Settings of the Airflow side, read through Airflow's configuration (section ``[airflow_tf]``).

Each option can be set the way every Airflow option is set: in ``airflow.cfg``::

    [airflow_tf]
    job_root = /srv/airflow-tf/jobs

or as ``AIRFLOW__AIRFLOW_TF__JOB_ROOT=/srv/airflow-tf/jobs``. The environment variables of
airflow-tf 0.1 (``AIRFLOW_TF_JOB_ROOT``, ``AIRFLOW_TF_PACKAGE_CACHE``) still work.

Precedence, highest first:

1. an explicit Airflow setting: ``AIRFLOW__AIRFLOW_TF__<OPTION>`` in the environment, or
   ``[airflow_tf] <option>`` in ``airflow.cfg``;
2. the 0.1 environment variable, where the option has one;
3. the built-in default (the one ``airflow config list`` shows).

An empty value counts as unset, and so does a value equal to the default: Airflow writes every
default into the ``airflow.cfg`` it creates on first start, which must not hide a 0.1 variable.

``airflow.configuration`` is imported inside the functions, so ``import airflow_tf`` stays
cheap, and where Airflow is not installed (a node) the functions still answer from the
environment and the defaults.
"""

from __future__ import annotations

import os

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.limits import DEFAULTS as LIMIT_DEFAULTS

SECTION = "airflow_tf"

# Option -> the airflow-tf 0.1 environment variable that set it.
LEGACY_ENV = {
    "job_root": "AIRFLOW_TF_JOB_ROOT",
    "package_cache": "AIRFLOW_TF_PACKAGE_CACHE",
}

DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_STOP_GRACE_SECONDS = 10.0
# Where a node keeps pip_packages environments when package_cache is unset: the home directory
# of the user the node runs as (so it differs per host and per container).
DEFAULT_PACKAGE_CACHE = "~/.cache/airflow-tf/pip-envs"
PATH_OPTIONS = ("job_root", "package_cache")


def airflow_env_name(option: str) -> str:
    """The ``AIRFLOW__AIRFLOW_TF__<OPTION>`` variable Airflow reads for ``option``."""
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


def _same(option: str, a: str, b: str) -> bool:
    if option in PATH_OPTIONS:
        return os.path.abspath(os.path.expanduser(a)) == os.path.abspath(os.path.expanduser(b))
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip() == b.strip()


def get(option: str) -> str | None:
    """The effective value of ``[airflow_tf] option`` as a string (``None``: no value anywhere)."""
    default = defaults()[option]
    legacy = os.environ.get(LEGACY_ENV[option]) if option in LEGACY_ENV else None
    fallback = legacy or default
    try:
        from airflow.configuration import conf
    except ImportError:  # a node without Airflow
        return fallback
    value = conf.get(SECTION, option, fallback=None)
    # Airflow writes every default into the airflow.cfg it creates on first start, so a value
    # equal to the default says nothing: the 0.1 variable, where set, still counts then.
    if value in (None, "") or (default is not None and _same(option, value, default)):
        return fallback
    return value


def _airflow_home() -> str:
    return os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow")


def default_job_root() -> str:
    return os.path.join(_airflow_home(), "airflow_tf_jobs")


def job_root() -> str:
    """Where LocalBackend (and DockerBackend's bind-mounted outputs) put job directories."""
    return os.path.abspath(os.path.expanduser(get("job_root") or default_job_root()))


def package_cache() -> str | None:
    """Where nodes keep ``pip_packages`` environments; ``None``: each node's own default
    (``~/.cache/airflow-tf/pip-envs`` of the user it runs as)."""
    value = get("package_cache")
    return os.path.expanduser(value) if value else None


def defaults() -> dict[str, str | None]:
    """Each option's built-in default as Airflow's config shows it (``None``: unset)."""
    return {
        "job_root": default_job_root(),
        "package_cache": None,
        "poll_interval": f"{DEFAULT_POLL_INTERVAL:g}",
        "stop_grace_seconds": f"{DEFAULT_STOP_GRACE_SECONDS:g}",
        **{name: str(value) for name, value in LIMIT_DEFAULTS.items()},
    }


def _number(option: str, minimum: float, inclusive: bool) -> float:
    raw = get(option)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    ok = value >= minimum if inclusive else value > minimum
    if not ok:  # also false for nan
        rel = ">=" if inclusive else ">"
        raise SpecError(f"[{SECTION}] {option} must be a number {rel} {minimum:g}, got {raw!r}")
    return value


def poll_interval() -> float:
    """Seconds between two polls of a job's nodes in the wait trigger (default 1.0)."""
    return _number("poll_interval", 0.0, inclusive=False)


def stop_grace_seconds() -> float:
    """Seconds a stopped node gets between SIGTERM and SIGKILL (default 10)."""
    return _number("stop_grace_seconds", 0.0, inclusive=True)


def limit(option: str) -> int:
    """One of the ``max_*`` bounds (``cluster.limits``): an integer >= 1."""
    raw = get(option)
    value = int(raw) if isinstance(raw, str) and raw.strip().isdecimal() else 0
    if value < 1:
        raise SpecError(f"[{SECTION}] {option} must be an integer >= 1, got {raw!r}")
    return value


def settings() -> dict[str, object]:
    """Every effective setting (what ``airflow-tf`` would use now), for logs and support."""
    return {
        "job_root": job_root(),
        "package_cache": package_cache(),
        "poll_interval": poll_interval(),
        "stop_grace_seconds": stop_grace_seconds(),
        **{name: limit(name) for name in LIMIT_DEFAULTS},
    }

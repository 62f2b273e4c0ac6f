"""The estimator's framework options: which Keras a job's ranks get, the TensorFlow version a
node must have, and the conda packages (and channels) installed for the job.

``keras_version``: TF 2.21's ``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is imported, and Keras 3 ``fit`` fails under MultiWorkerMirrored and
ParameterServer (keras-team/keras#20585); Horovod's Keras modules only work with Keras 2. So
"auto" means Keras 2 (tf_keras) for every distributed strategy and leaves single-process jobs
alone. The variable is set for every rank by ``runtime.rank_env`` from the plan's field.

``framework_version`` (the estimator's TensorFlow version) cannot be checked here: the Airflow
side need not have TensorFlow, and the node's is what counts. It is checked on the node before
any rank starts (``runtime.frameworks``).
"""

from __future__ import annotations

import enum
import re
from typing import Any

from airflow_tf.cluster.checks import check_no_nul, check_string_list, describe
from airflow_tf.cluster.errors import SpecError

DEFAULT_CONDA_CHANNELS = ("conda-forge",)
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")
# A conda match spec: a package name first (optionally ``channel::``), then version/build parts.
_CONDA_SPEC = re.compile(r"^([A-Za-z0-9_.\-/:]+::)?[A-Za-z0-9_][A-Za-z0-9_.\-]*([ =<>!~*,|\[\]A-Za-z0-9_.+\-]*)?$")


class KerasVersion(enum.StrEnum):
    KERAS_2 = "2"  # tf_keras: TF_USE_LEGACY_KERAS=1
    KERAS_3 = "3"  # Keras 3: TF_USE_LEGACY_KERAS=0
    AUTO = "auto"  # 2 for distributed strategies (their fit needs it), unset for a single process


def check_keras_version(value: Any) -> KerasVersion:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    try:
        return KerasVersion(value)
    except ValueError:
        raise SpecError(f"keras_version must be one of {[v.value for v in KerasVersion]}, got {value!r}") from None


def resolve_keras(choice: KerasVersion | str, distributed: bool) -> str | None:
    """The Keras the ranks get ("2" / "3"), or None: TF_USE_LEGACY_KERAS is left as it is."""
    choice = KerasVersion(choice)
    if choice is KerasVersion.AUTO:
        return KerasVersion.KERAS_2.value if distributed else None
    return choice.value


def check_framework_version(value: Any) -> str | None:
    """The TensorFlow version the job needs: "2", "2.21" or "2.21.0" (a prefix of the node's)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise SpecError(f"framework_version must be a string such as '2.21' (quoted: 2.10 as a number is 2.1), "
                        f"got {value!r}")
    if not isinstance(value, str) or not _VERSION.match(value):
        raise SpecError(f"framework_version must be a TensorFlow version such as '2.21' or '2.21.0', got {value!r}")
    return value


def check_conda_packages(value: Any) -> list[str]:
    packages = check_string_list("conda_packages", value)
    for i, spec in enumerate(packages):
        check_no_nul(f"conda_packages[{i}]", spec)
        if spec.startswith("-") or not _CONDA_SPEC.match(spec.strip()) or spec != spec.strip():
            raise SpecError(f"conda_packages[{i}] must be a conda package spec such as 'scikit-learn' or "
                            f"'numpy>=1.26', got {spec!r}" + (" (options are not allowed: use conda_channels for "
                                                            "channels)" if spec.startswith("-") else ""))
    return packages


def check_conda_channels(value: Any) -> list[str] | None:
    """Channel names ("conda-forge") or URLs ("file:///srv/channel", "https://mirror/channel");
    None: ``DEFAULT_CONDA_CHANNELS`` (applied by the planner, so the spec still says "not given")."""
    if value is None:
        return None
    channels = check_string_list("conda_channels", value)
    if not channels:
        raise SpecError("conda_channels must list at least one channel (a name such as 'conda-forge' or a URL "
                        f"such as 'file:///srv/channel'), got {describe(value)}; omit it for the default "
                        f"{list(DEFAULT_CONDA_CHANNELS)}")
    for i, channel in enumerate(channels):
        check_no_nul(f"conda_channels[{i}]", channel)
        if not channel.strip() or channel != channel.strip() or channel.startswith("-"):
            raise SpecError(f"conda_channels[{i}] must be a channel name or URL (not empty, no surrounding spaces, "
                            f"not an option), got {channel!r}")
    return channels

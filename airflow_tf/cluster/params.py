"""script_params -> argv. Always a list handed to exec, never a shell string."""

from __future__ import annotations

from typing import Any


def script_argv(script_params: dict[str, Any] | list[str]) -> list[str]:
    """``{"--lr": 0.1, "--verbose": None}`` -> ``["--lr", "0.1", "--verbose"]``.

    Values are passed with ``str()`` as the retired estimator did; None means a bare flag.
    """
    if isinstance(script_params, list):
        return list(script_params)
    argv: list[str] = []
    for flag, value in script_params.items():
        argv.append(flag)
        if value is not None:
            argv.append(str(value))
    return argv

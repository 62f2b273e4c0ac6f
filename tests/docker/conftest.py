"""A real Docker engine for the DockerBackend tests: a private dockerd per session (engine.py).

No dockerd (or not root) is a failure, not a skip: CI must not pass without these tests.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.docker.engine import EngineError, private_dockerd


@pytest.fixture(scope="session")
def dockerd():
    """Yields ``{"url", "image", "python", "mounts", "client", "env"}``; sets ``env`` for tests/dags/tf_docker.py."""
    with contextlib.ExitStack() as stack:
        try:
            info = stack.enter_context(private_dockerd())
        except EngineError as exc:
            pytest.fail(str(exc))
        env = stack.enter_context(pytest.MonkeyPatch.context())
        for key, value in info["env"].items():
            env.setenv(key, value)
        yield info

"""NodeExits: a node's exit ends the trigger's pause (real processes, real pidfds)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from airflow_tf.triggers.node_exits import NodeExits


def child(release: str) -> subprocess.Popen:
    """A process that exits once the file ``release`` exists (the test decides the order)."""
    code = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)"
    return subprocess.Popen([sys.executable, "-c", code, release])


def test_each_exit_ends_one_pause_and_drops_only_its_own_descriptor(tmp_path):
    first, second = child(str(tmp_path / "first")), child(str(tmp_path / "second"))
    fds = {first.pid: os.pidfd_open(first.pid), second.pid: os.pidfd_open(second.pid)}
    exits = NodeExits([fds[second.pid], fds[first.pid]])

    async def scenario():
        assert await exits.pause(0.2) is False  # nobody exited: the pause runs out
        (tmp_path / "first").touch()
        assert await exits.pause(60) is True
        assert exits.fds == [fds[second.pid]]  # the one still running is still watched
        assert await exits.pause(0.2) is False
        (tmp_path / "second").touch()
        assert await exits.pause(60) is True
        assert exits.fds == []
        assert await exits.pause(0.01) is False  # nothing left to watch: a plain sleep

    asyncio.run(scenario())
    assert first.wait(10) == 0 and second.wait(10) == 0


def test_no_descriptors_is_a_plain_sleep():
    assert asyncio.run(NodeExits([]).pause(0.01)) is False

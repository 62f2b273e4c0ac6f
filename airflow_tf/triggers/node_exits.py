"""Wake the wait trigger the moment a node exits, not at its next poll.

The trigger polls every ``poll_interval`` to stream logs; a job that ended just after a poll
would otherwise sit finished for up to that long before the wait reports it (measured: most
of the time from the last node's exit to the wait task's end). Backends that can offer a file
descriptor readable on a node's exit (``Backend.exit_descriptor``; LocalBackend: a pidfd of the
launcher) get watched on the event loop with ``add_reader``; the trigger's pause between polls
ends early when one fires. Written by hand: asyncio has no "wait for another process's exit"
(``asyncio.subprocess`` only watches its own children), and the wake-up is only a hint, the
outcome is still read by the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from airflow_tf.backends.base import Backend, Handle


class NodeExits:
    """The exit descriptors of a job's nodes, and a pause that any of them ends."""

    def __init__(self, fds: list[int]):
        self.fds = list(fds)

    @classmethod
    def open(cls, backend: Backend, handles: list[Handle]) -> "NodeExits":
        """Blocking (procfs reads): run it in a thread. A node without one is simply polled."""
        fds = []
        for handle in handles:
            try:
                fd = backend.exit_descriptor(handle)
            except Exception:  # noqa: BLE001 - only a wake-up hint: polling still sees the exit
                fd = None
            if fd is not None:
                fds.append(fd)
        return cls(fds)

    async def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when a node's exit cut it short. A descriptor that
        fired is closed and dropped (it stays readable: it would end every later pause at once)."""
        if not self.fds:
            await asyncio.sleep(seconds)
            return False
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[int] = loop.create_future()

        def wake(fd: int) -> None:
            if not fired.done():
                fired.set_result(fd)

        watched = []
        try:
            for fd in self.fds:
                try:
                    loop.add_reader(fd, wake, fd)
                except (NotImplementedError, ValueError, OSError):
                    continue  # an event loop that cannot watch descriptors: plain sleep for this one
                watched.append(fd)
            try:
                exited = await asyncio.wait_for(asyncio.shield(fired), seconds)
            except asyncio.TimeoutError:
                return False
        finally:
            for fd in watched:
                loop.remove_reader(fd)
        self._drop(exited)
        return True

    def _drop(self, fd: int) -> None:
        with contextlib.suppress(ValueError):
            self.fds.remove(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def close(self) -> None:
        for fd in list(self.fds):
            self._drop(fd)

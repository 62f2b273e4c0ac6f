"""The node-directory contract: every file a node's directory holds, named once.

A job directory holds one directory per node, one directory per try of that node inside it
(every start of a node is a new try; earlier tries' files are kept), and the chief's outputs::

    <job>/node-<i>/handle.json              the current try's handle (a re-run launch finds it there)
    <job>/node-<i>/try-<k>/node.json        what the node runs (cluster.plan.NodeLaunch), written by the backend
    <job>/node-<i>/try-<k>/node.log         every process's output, prefixed with its label
    <job>/node-<i>/try-<k>/handle.json      that try's handle
    <job>/node-<i>/try-<k>/secrets.json     secret values (0600), gone once the launcher has read them
    <job>/node-<i>/try-<k>/exit_code        the try's exit code, written last and atomically by its launcher
    <job>/node-<i>/try-<k>/metrics-rank<r>.jsonl   one JSON line per epoch (training.log_metrics)
    <job>/node-<i>/try-<k>/model_path       the chief's saved model (training.save_model)
    <job>/node-<i>/try-<k>/tensorboard_dir  the chief's TensorBoard directory
    <job>/node-0/try-<k>/watch_state.json   the wait trigger's offsets: a restarted trigger streams on from there
    <job>/outputs/                          the chief's outputs (shared by every try: checkpoints live here)

An exit code counts only for the try that wrote it: a launcher writes into its own try's
directory, and a handle names exactly one try. Container backends keep one container per try
instead of a try directory (the container is the try).

Backends, the launcher, the training helpers and the trigger all take the names from here.
Standard library only: this module is shipped to the nodes with the rest of ``runtime/``.
"""

from __future__ import annotations

import os

NODE_SPEC = "node.json"
LOG = "node.log"
HANDLE = "handle.json"
EXIT_CODE = "exit_code"
HOSTFILE = "hostfile"  # MPI: written by hvd_mpirun on node 0
MODEL_PATH = "model_path"
TENSORBOARD_DIR = "tensorboard_dir"
OUTPUTS = "outputs"  # a sibling of the node directories
SECRETS = "secrets.json"  # secret_environment_variables' values: read and deleted by the launcher at start
WATCH_STATE = "watch_state.json"  # node 0 only: what the wait trigger has streamed (its byte offsets)
_METRICS = "metrics-rank{rank}.jsonl"

# The node's exit code when its log could not be written (disk full, directory gone): EX_IOERR.
LOG_FAILED = 74
# The node's exit code when a port planned for it was taken by the time it started: EX_TEMPFAIL
# (a new plan picks free ports).
PORTS_TAKEN = 75

# Node files are private to the job's user: node.json holds the user's environment values.
FILE_MODE = 0o600
DIR_MODE = 0o700


def node_dirname(node_index: int) -> str:
    return f"node-{int(node_index)}"


def try_dirname(try_number: int) -> str:
    return f"try-{int(try_number)}"


def next_try(names: list[str]) -> int:
    """The try number after the highest ``try-<k>`` among a node directory's entries (1 for none)."""
    numbers = [int(n[4:]) for n in names if n.startswith("try-") and n[4:].isdigit()]
    return max(numbers, default=0) + 1


def make_try_dir(node_root: str) -> tuple[int, str]:
    """Create the node's next try directory (0700) and return ``(try_number, path)``. ``mkdir``
    is the lock: two starters racing for one number get different ones."""
    os.makedirs(node_root, mode=DIR_MODE, exist_ok=True)
    os.chmod(node_root, DIR_MODE)
    number = next_try(os.listdir(node_root))
    while True:
        path = os.path.join(node_root, try_dirname(number))
        try:
            os.mkdir(path, DIR_MODE)
            return number, path
        except FileExistsError:
            number += 1


def metrics_file(rank: int) -> str:
    return _METRICS.format(rank=int(rank))


def check_name(name: str) -> str:
    """Readers take plain file names of a node directory, never paths: nothing outside it is read."""
    if not isinstance(name, str) or not name or "/" in name or os.sep in name or name.startswith("."):
        raise ValueError(f"a node file is a plain file name, got {name!r}")
    return name


def write_atomic(path: str, text: str, mode: int = FILE_MODE) -> None:
    """Write ``text`` so that a reader sees the old content or the whole new one, never a part."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


_RESERVED = ".exit_code.reserved"


def reserve_exit_code(node_dir: str) -> None:
    """Allocate the exit-code file's block while there is room, so the code can be written on
    a disk that has filled up since (it is rewritten in place, then renamed)."""
    try:
        write_atomic(os.path.join(node_dir, _RESERVED), " " * 32)
    except OSError:
        pass  # no room even now: write_exit_code tries the normal way


def write_exit_code(node_dir: str, code: int) -> None:
    reserved, path = os.path.join(node_dir, _RESERVED), os.path.join(node_dir, EXIT_CODE)
    text = f"{int(code)}\n"
    try:
        with open(reserved, "r+") as f:  # in place: no new block needed
            f.write(text)
            f.truncate()
        os.replace(reserved, path)
    except OSError:
        write_atomic(path, text)


def parse_exit_code(text: str | bytes | None) -> int | None:
    """The code in an exit_code file's content; None when absent or not (yet) a number."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None

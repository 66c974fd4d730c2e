"""Reproducible, offline runs: the first cell of every notebook calls :func:`setup_notebook`.

Three things make a run repeatable on a laptop and in CI:

* one seed for Python's ``random``, NumPy, PyTorch and (if it is already imported) TensorFlow;
* a fixed number of CPU threads, because the order of floating-point sums, and therefore the
  last digits of a result, depends on how the work is split;
* no network: the book must run offline, so any attempt to open a connection to anything other
  than this machine raises :class:`NetworkAccessError` instead of hanging or silently falling back.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sys
import warnings

import numpy as np

__all__ = ["NetworkAccessError", "seed_everything", "set_threads", "fixed_threads", "forbid_network",
           "allow_network", "setup_notebook", "import_tensorflow"]


class NetworkAccessError(RuntimeError):
    """Raised when code tries to reach the network while the book runs offline.

    Deliberately *not* an :class:`OSError`, so that libraries which quietly retry or fall back on
    connection errors cannot swallow it.
    """


def _describe(value) -> str:
    """How an error message names a value it received: dtype, kind and shape of a NumPy array or PyTorch
    tensor (``a torch.float32 tensor of shape (2, 3)``), else its type and ``repr``, cut to 80 characters."""
    if isinstance(value, np.ndarray) or (type(value).__module__.startswith("torch") and hasattr(value, "shape")
                                         and hasattr(value, "dtype")):
        kind = "array" if isinstance(value, np.ndarray) else "tensor"
        return f"a {value.dtype} {kind} of shape {tuple(value.shape)}"
    text = f"{type(value).__name__}: {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy, PyTorch and TensorFlow (only those already imported) with ``seed``."""
    seed = _check_int("seed", seed, 0)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "utils"):
        sys.modules["keras"].utils.set_random_seed(seed)
    return seed


def set_threads(threads: int = 2) -> int:
    """Fix the number of CPU threads of PyTorch (and TensorFlow, if imported) to ``threads``."""
    threads = _check_int("threads", threads, 1)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow refuses once it has started; keep its setting
            pass
    return threads


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


@contextlib.contextmanager
def fixed_threads(threads: int | None):
    """Run the ``with`` block with ``torch.set_num_threads(threads)`` and restore the previous count after.

    ``None`` keeps the current count. Yields the count in force.
    """
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(_check_int("threads", threads, 1))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _is_local(sock: socket.socket, address) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    return host in ("localhost", "::1", "0.0.0.0") or str(host).startswith("127.")


def _guarded(original):
    def connect(self, address):
        if not _is_local(self, address):
            raise NetworkAccessError(
                f"network access to {address!r} is forbidden: the book runs offline "
                "(set MMTUTOR_OFFLINE=0 or call mmtutor.runtime.allow_network() to lift this)")
        return original(self, address)
    connect.__name__ = original.__name__
    connect.__doc__ = original.__doc__
    return connect


def forbid_network() -> None:
    """Make every non-loopback ``socket.connect`` in this process raise :class:`NetworkAccessError`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    socket.socket.connect = _guarded(_original_connect)
    socket.socket.connect_ex = _guarded(_original_connect_ex)


def allow_network() -> None:
    """Undo :func:`forbid_network`."""
    socket.socket.connect = _original_connect
    socket.socket.connect_ex = _original_connect_ex


def setup_notebook(seed: int = 0, threads: int = 2, offline: bool | None = None) -> dict:
    """Seed everything, fix the thread count and, when offline, forbid the network.

    ``offline=None`` follows the environment variable ``MMTUTOR_OFFLINE`` (the Makefile sets it
    to 1 for tests and notebook runs; a reader with network access may leave it unset).
    Returns the settings, so that the first cell shows what the run used.
    """
    if offline is None:
        offline = os.environ.get("MMTUTOR_OFFLINE", "0") not in ("", "0", "false", "False")
    elif not isinstance(offline, bool):
        raise TypeError(f"offline must be a bool or None, got {type(offline).__name__}: {offline!r}")
    # tqdm.auto (used by transformers) warns once per kernel when ipywidgets is missing; the book's
    # progress bars are plain text, so the warning only adds noise to the notebook's stderr.
    warnings.filterwarnings("ignore", message="IProgress not found", category=Warning)
    threads = set_threads(threads)
    seed = seed_everything(seed)
    if offline:
        forbid_network()
    return {"seed": seed, "threads": threads, "offline": offline}


def import_tensorflow():
    """Import and return ``tensorflow`` without its C++ start-up notices.

    TensorFlow's runtime prints lines such as "oneDNN custom operations are on" and "Could not find
    cuda drivers", stamped with the time and the process id, straight to file descriptor 2 before any
    Python setting can silence them; in a notebook they would differ on every run. File descriptor 2
    points at ``/dev/null`` while TensorFlow loads, and is restored afterwards.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    return tf

"""Ray, the one execution engine for work spread over processes or machines.

``shopsim sweep`` (Ray Tune trials) and ``shopsim ope validate --ray`` (Ray tasks) connect the
same way: a local Ray with this machine's cores unless an address of a running cluster is given
(``ray start --head`` on one machine, ``--address HOST:PORT`` from another). Ray is an optional
extra; without it, the commands that need it say how to install it in one line.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from shopsim.errors import ShopsimError

RAY_INSTALL = "pip install 'shopsim[ray]'"


def require_ray(what: str = "shopsim sweep runs its trials") -> Any:
    """The ``ray`` module (with Tune), or one line saying how to install it."""
    try:
        import ray
        import ray.tune
    except ImportError:
        raise ShopsimError(f"{what} on Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def check_address(address: str | None) -> None:
    """One line when a ``--address HOST:PORT`` cannot be reached (before anything starts)."""
    if address in (None, "", "local", "auto"):
        return
    host, sep, port = str(address).removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ShopsimError(
            f"--address {address!r}: expected HOST:PORT of a Ray head node (`ray start --head`)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ShopsimError(
            f"--address {address}: cannot reach a Ray head node there ({exc.strerror or exc}); "
            "start one with `ray start --head` or check the address"
        ) from None


def connect(address: str | None) -> Any:
    """Start a local Ray (every core of this machine) or join the cluster at ``address``;
    returns the ``ray`` module. A Ray that is already initialised is used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(
            address=address or None,
            num_cpus=None if address else (os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except Exception as exc:  # e.g. the cluster's auth token is missing here
        raise ShopsimError(
            f"--address {address or 'local'}: Ray could not start or connect "
            f"({one_line(exc)[:200]}); "
            "a cluster started by `ray start --head` wants RAY_AUTH_MODE=token and its token "
            "(`ray get-auth-token` on the head) in RAY_AUTH_TOKEN or ~/.ray/auth_token"
        ) from None
    return ray


def set_threads(n: int) -> None:
    """Pin this process's torch and BLAS threads: two torch processes with default threads on
    2 cores thrash, so every Ray trial or task that computes sets its own."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


def one_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's message, unwrapping Ray's ``cause`` chain."""
    cause: BaseException = exc
    while getattr(cause, "cause", None) is not None:  # Ray wraps the trial's own exception
        cause = cause.cause  # type: ignore[attr-defined]
    text = str(cause).strip().splitlines()
    last = next((ln for ln in reversed(text) if ln.strip()), type(cause).__name__)
    return last[:300]

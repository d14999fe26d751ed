"""Starting the processes a test talks to: a free local port, and `torch.distributed.run` with N
gloo processes on this machine, which fails a test that hangs with the end of what its processes
printed (a bare `TimeoutExpired` shows only the first line of their output)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(
    processes: int, script_and_args: Sequence[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m torch.distributed.run --nproc_per_node PROCESSES SCRIPT ARGS...` on 127.0.0.1, one
    thread per process (OMP_NUM_THREADS=1, as torchrun would set). Returns the finished run (the caller
    checks its return code); a run still going after `timeout` seconds fails the test with its output."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--nnodes", "1",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *script_and_args,
    ]  # fmt: skip
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        )
    except subprocess.TimeoutExpired as hung:
        printed = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part or "" for part in (hung.stdout, hung.stderr))
        pytest.fail(f"{processes} processes of {script_and_args[0]} still running after {timeout:.0f} s; they printed, last:\n{printed[-4000:]}")

"""What starting throwaway local servers needs: a free port, a scratch directory a service
user can write, commands run as that user, and waiting on a condition with a deadline.

Used by broker_nodes.py (extra RabbitMQ nodes) and postgres_instances.py (extra PostgreSQL
clusters). The distribution's servers refuse to run as root, so when we are root every
command runs as the server's own user (`su USER -s /bin/sh -c ...`); otherwise as us.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path


class Missing(Exception):
    """Something a local server needs is not installed: the message says what and how."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, pause: float = 0.1):
    """Poll `condition` until it is truthy and return its value; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


def service_user(name: str) -> str | None:
    """The user to run a server as: `name` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise Missing(f"user {name!r} does not exist: install the distribution's package") from None
    return name


def scratch_directory(prefix: str, owner: str | None) -> Path:
    """A new empty directory, owned by `owner` when given."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        shutil.chown(path, owner)
        path.chmod(0o755)
    return path


def run_as(
    user: str | None,
    argv: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (with extra `env`) as `user`, or as ourselves when None; never raises on
    a non-zero exit (the caller reads `.returncode`)."""
    extra = dict(env or {})
    if user is None:
        return subprocess.run(
            argv,
            env={**os.environ, **extra},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in extra.items())
    script = f"{assignments} exec {shlex.join(argv)}".strip()
    return subprocess.run(
        ["su", user, "-s", "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or "/",
    )


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

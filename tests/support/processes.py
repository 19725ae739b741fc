"""Processes as /proc shows them, for killing a whole tree (a server and what it started,
or rabbitmqctl and the Erlang VM it starts through `su`): bench.support uses it too."""

from __future__ import annotations

from pathlib import Path


def proc_stat(path: Path) -> list[str] | None:
    """The fields of a /proc/.../stat after the command name: state, ppid, ..., utime, stime."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(entry / "stat")) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found

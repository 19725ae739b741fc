"""The processes below a process, read from /proc (Linux): whom `shop up` started, and
whom they started (gunicorn's workers). Used by the benchmarks and by `shop chaos`."""

from __future__ import annotations

from pathlib import Path


def proc_stat(path: Path) -> list[str] | None:
    """The fields of a /proc/.../stat after the command name: state, ppid, ..., utime, stime."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(entry / "stat")) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, their children, ...)."""
    children = children_by_parent()
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""

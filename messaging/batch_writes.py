"""Many small writes of one transaction as one statement, just before it commits.

A consumer's batch handles a hundred messages in one transaction; each adds an outbox row,
bumps a counter... A statement each would cost more than the handling itself. So while a
transaction collects (`start(session)`, which the consumer runner does for its batch),
a writer hands its row over with `later()`, and the rows of one kind go in with one
statement just before the transaction commits. A write made inside a SAVEPOINT is done at
once instead (`collecting()` says so), so that rolling the savepoint back takes it along.

    if batch_writes.collecting(session):
        batch_writes.later(session, outbox_table, row, insert_rows)
    else:
        insert_rows(session, outbox_table, [row])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

Writer = Callable[[Session, Any, list[Any]], None]  # (session, kind, items)
_PENDING = "shop_batch_writes"  # session.info: {kind: (writer, [items])}


def start(session: Session) -> None:
    """Collect this transaction's writes from now on, and write them just before it commits."""
    session.info[_PENDING] = {}
    event.listen(session, "before_commit", _write_all)


def collecting(session: Session) -> bool:
    return _PENDING in session.info and not session.in_nested_transaction()


def later(session: Session, kind: object, item: Any, write: Writer) -> None:
    session.info[_PENDING].setdefault(kind, (write, []))[1].append(item)


def _write_all(session: Session) -> None:
    if session.in_nested_transaction():  # SQLAlchemy calls this for a SAVEPOINT's release too
        return
    for kind, (write, items) in session.info.pop(_PENDING, {}).items():
        write(session, kind, items)

"""Many small writes of one transaction as one statement, just before it commits.

A consumer's batch handles a hundred messages in one transaction; each adds an outbox row,
bumps a counter... A statement each would cost more than the handling itself. So while a
transaction collects (`start(session)`, which the consumer runner does for its batch),
a writer hands its row over with `later()`, and the rows of one kind go in with one
statement just before the transaction commits (tables that others refer to first: an
order before its lines). Outside such a batch, or inside a SAVEPOINT (so that rolling the
savepoint back takes the write along), it is done at once.

    batch_writes.insert(session, outbox_table, row)       # one INSERT for the batch's rows
    batch_writes.write(session, "counters", deltas, add)  # add(session, "counters", [deltas...])
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sqlalchemy import MetaData, Table, event
from sqlalchemy import insert as insert_statement
from sqlalchemy.orm import Session

Writer = Callable[[Session, Any, list[Any]], None]  # (session, kind, items)
_PENDING = "shop_batch_writes"  # session.info: {kind: (writer, [items])}


def start(session: Session) -> None:
    """Collect this transaction's writes from now on, and write them just before it commits."""
    session.info[_PENDING] = {}
    event.listen(session, "before_commit", _write_all)


def write(session: Session, kind: object, item: Any, writer: Writer) -> None:
    """`writer(session, kind, [item, ...])` for this transaction's items of `kind`: once,
    before the commit, while the transaction collects; else at once, for this item."""
    write_all(session, kind, [item], writer)


def write_all(session: Session, kind: object, items: list[Any], writer: Writer) -> None:
    """`write` for several items at once (outside a batch: one call for all of them)."""
    if not items:
        return
    if _PENDING in session.info and not session.in_nested_transaction():
        session.info[_PENDING].setdefault(kind, (writer, []))[1].extend(items)
    else:
        writer(session, kind, items)


def insert(session: Session, table: Table, *rows: dict[str, Any]) -> None:
    """Rows into `table`, with the other rows of the batch in one Core INSERT (outside a
    batch, these rows in one INSERT)."""
    write_all(session, table, list(rows), _insert_rows)


def _insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    # Core on the session's connection: several times cheaper than Session.execute.
    session.connection().execute(insert_statement(table), rows)


def _write_all(session: Session) -> None:
    if session.in_nested_transaction():  # SQLAlchemy calls this for a SAVEPOINT's release too
        return
    pending = session.info.pop(_PENDING, {})
    for kind, (write, items) in sorted(pending.items(), key=_parents_first):
        write(session, kind, items)


def _parents_first(pending: tuple[object, Any]) -> int:
    """A table's rows go in before the rows that refer to them (an order before its lines,
    whatever order the handlers wrote them in); other kinds of write after every table."""
    kind = pending[0]
    if isinstance(kind, Table):
        return _dependency_order(kind.metadata, len(kind.metadata.tables))[kind]
    return sys.maxsize


@lru_cache
def _dependency_order(metadata: MetaData, _tables: int) -> dict[Table, int]:
    return {table: index for index, table in enumerate(metadata.sorted_tables)}

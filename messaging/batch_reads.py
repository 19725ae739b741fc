"""What a batch's handlers will read, read once for the whole batch: the mirror of
batch_writes.py.

A consumer's batch handles a hundred messages in one transaction, and each handler would
look up its row (the order it settles, the decision it must not take twice) with a
statement of its own. A route may instead say how to read the rows of all its messages
at once (`Route(..., read_ahead=...)`, messaging/routes.py): the consumer runner calls it
once per batch, before the first handler, and it keeps what it found here. A handler then
takes its row from here, and keeps the entry true when it changes the row (a later
message of the batch may be about the same row). Outside a batch (a SAVEPOINT per message
after a failure, a test calling the handler) nothing was read ahead, and the handler reads
its row itself.

    batch_reads.keep(session, "orders", {order_id: row_or_None, ...})   # the read-ahead
    found = batch_reads.kept(session, "orders")                         # the handler
    row = found[order_id] if found is not None and order_id in found else read_it_myself()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

_KEPT = "shop_batch_reads"  # session.info: {kind: {key: what was found, None if nothing}}


def keep(session: Session, kind: str, found: dict[Any, Any]) -> None:
    """What a read-ahead found for `kind`: an entry for every key it looked for."""
    session.info.setdefault(_KEPT, {})[kind] = found


def kept(session: Session, kind: str) -> dict[Any, Any] | None:
    """What the batch read ahead for `kind` (change it with the row), or None: read it."""
    return session.info.get(_KEPT, {}).get(kind)


@dataclass(frozen=True)
class DoneOnce:
    """Something a handler does at most once per key (an order decided, a reward issued),
    and the SELECT that finds, among `:ids` (an expanding bind parameter), the keys for
    which it was done: read ahead for a batch, or for one key when nothing was. A key of
    several columns is a tuple, selected and matched with `tuple_(...).in_(...)`.

        DECIDED = DoneOnce("decided orders", select(t.c.order_id).where(t.c.order_id.in_(
            bindparam("ids", expanding=True))))
        DECIDED.read_ahead(session, [order.order_id for order in orders])   # per batch
        if DECIDED.done_before(session, order_id): return                   # per message
    """

    kind: str
    statement: Select[Any]

    def read_ahead(self, session: Session, keys: list[Any]) -> None:
        ids = sorted(set(keys))
        rows = session.connection().execute(self.statement, {"ids": ids})
        done = {row[0] if len(row) == 1 else tuple(row) for row in rows}  # a key, or a tuple
        keep(session, self.kind, {key: key in done for key in ids})

    def done_before(self, session: Session, key: Any) -> bool:
        """Whether it was done for `key`; from now on it counts as done (the caller does it
        now, so a later message of the batch about the same key finds it done)."""
        found = kept(session, self.kind)
        if found is None or key not in found:  # not read ahead: read it now
            row = session.connection().execute(self.statement, {"ids": [key]}).first()
            found = {key: row is not None}
        before = found[key]
        found[key] = True
        return before

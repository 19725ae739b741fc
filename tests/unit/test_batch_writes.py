"""messaging/batch_writes.py: a batch's rows go in just before its commit, a table's rows
before the rows that refer to them, whatever order the handlers wrote them in (SQLite
checks the foreign keys: make_engine turns them on)."""

from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from messaging import batch_writes
from messaging.database import make_engine


class Base(DeclarativeBase):
    pass


class Parent(Base):
    __tablename__ = "parents"
    id: Mapped[str] = mapped_column(String(10), primary_key=True)


class Child(Base):
    __tablename__ = "children"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("parents.id"))


def test_rows_that_refer_to_others_go_in_after_them_and_only_at_the_commit():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        batch_writes.start(session)
        batch_writes.write(session, "a counter", 1, lambda s, kind, items: None)
        batch_writes.insert(session, Child.__table__, {"parent_id": "p1"})  # first written
        batch_writes.insert(session, Parent.__table__, {"id": "p1"})
        batch_writes.insert(session, Child.__table__, {"parent_id": "p1"})
        assert session.scalar(select(func.count()).select_from(Parent)) == 0, "not yet"
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Child)) == 2


def test_outside_a_batch_a_row_goes_in_at_once():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        batch_writes.insert(session, Parent.__table__, {"id": "p2"})
        assert session.scalar(select(func.count()).select_from(Parent)) == 1

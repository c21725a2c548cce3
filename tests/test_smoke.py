from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import get_resource_changes, track_table


def test_insert_update_delete_round_trip(audit):
    """An insert, an update and a delete each come back as change rows, newest first."""

    @track_table(tracked_fields=["name"])
    class Thing(audit.base):
        __tablename__ = "things"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))

    audit.create_tables()
    audit.user = 7
    with audit.Session() as session:
        thing = Thing(name="a")
        session.add(thing)
        session.commit()
        thing.name = "b"
        session.commit()
        session.delete(thing)
        session.commit()
        changes = get_resource_changes(Thing, session=session, filter_resource_ids=thing.id)
    assert [(c.operation, c.old_value, c.new_value) for c in changes] == [
        ("delete", "b", None),
        ("update", "a", "b"),
        ("insert", None, "a"),
    ]
    assert {c.changed_by for c in changes} == {"7"}

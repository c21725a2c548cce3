"""set_sensitive_fields: keyed digests and masks instead of values, and the setups it refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ops_support import declare_customer
from sqlalchemy import String, update
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import OperationError, get_resource_changes, track_table
from sqlaudit.ops import clear_sensitive_fields, set_sensitive_fields

KEY = b"k" * 32


@pytest.fixture(autouse=True)
def _forget_declarations() -> Iterator[None]:
    clear_sensitive_fields()
    yield
    clear_sensitive_fields()


@pytest.fixture
def customer(audit):
    """A tracked Customer, with bulk statements audited in Python."""
    model = declare_customer(audit.base)
    audit.create_tables()
    audit.configure(bulk_in_database=False)
    return model


def test_a_digested_field_shows_changes_but_not_values(audit, customer):
    """Digests replace the values; equal values give equal digests; other fields stay clear."""
    set_sensitive_fields(customer, {"email": "digest"}, key=KEY)
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
        session.get(customer, 1).email = "jane@work.example"
        session.commit()
    changes = get_resource_changes(customer, filter_resource_ids=1, filter_fields="email")
    update_row, insert_row = changes
    assert insert_row.new_value.startswith("digest:") and len(insert_row.new_value) == 39
    assert update_row.old_value == insert_row.new_value
    assert update_row.new_value not in (None, insert_row.new_value)
    assert not any("example" in str(row) for row in audit.rows() if row.field_name == "email")
    [name] = get_resource_changes(customer, filter_resource_ids=1, filter_fields="name")
    assert name.new_value == "Jane"


def test_the_digest_depends_on_the_key(audit, customer):
    """Another key gives another digest of the same value."""
    set_sensitive_fields(customer, {"email": "digest"}, key=KEY)
    with audit.Session() as session:
        session.add(customer(id=1, name="A", email="same@example.com"))
        session.commit()
        set_sensitive_fields(customer, {"email": "digest"}, key="another key of 16+ chars")
        session.add(customer(id=2, name="B", email="same@example.com"))
        session.commit()
    digests = [row.new_value for row in audit.rows() if row.field_name == "email"]
    assert len(set(digests)) == 2


def test_a_masked_field_and_a_bulk_update_are_redacted(audit, customer):
    """``mask`` stores the marker, for flushes and for bulk statements alike."""
    set_sensitive_fields(customer, {"email": "mask"})
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
        session.execute(update(customer).where(customer.id == 1).values(email="new@example.com"))
        session.commit()
    rows = [
        (r.operation, r.old_value, r.new_value) for r in audit.rows() if r.field_name == "email"
    ]
    assert rows == [("insert", None, "[masked]"), ("update", "[masked]", "[masked]")]


def test_clearing_the_declaration_stores_values_again(audit, customer):
    """After ``clear_sensitive_fields`` values are stored in clear."""
    set_sensitive_fields(customer, {"email": "mask"})
    clear_sensitive_fields(customer)
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
    assert "str:jane@example.com" in [row.new_value for row in audit.rows()]


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        ({"phone": "mask"}, None, "phone is not tracked on Customer; .*name, email"),
        ({"email": "hash"}, None, "'digest' .* or 'mask'"),
        ({"email": "digest"}, None, "needs key="),
        ({"email": "digest"}, b"short", "needs key="),
        ({}, None, "takes a dict"),
    ],
)
def test_bad_declarations_are_refused(audit, customer, fields, key, words):
    """Each bad declaration raises OperationError naming the model, the field and the fix."""
    with pytest.raises(OperationError, match=words):
        set_sensitive_fields(customer, fields, key=key)


def test_an_untracked_model_is_refused(audit):
    """Only tracked models can have sensitive fields."""
    with pytest.raises(OperationError, match="int is not a tracked model"):
        set_sensitive_fields(int, {"email": "mask"})


def test_bulk_statements_audited_in_the_database_are_refused(audit):
    """With ``bulk_in_database=True`` values would bypass redaction: refused, with the fix."""
    model = declare_customer(audit.base)
    with pytest.raises(OperationError, match="bulk_in_database=False"):
        set_sensitive_fields(model, {"email": "mask"})


def test_database_capture_is_refused(audit):
    """A model captured by triggers cannot be redacted: refused, with the fix."""
    audit.configure(bulk_in_database=False)

    @track_table(tracked_fields=["email"], capture="database")
    class Contact(audit.base):
        __tablename__ = "contacts"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(100))

    with pytest.raises(OperationError, match="captured by database triggers"):
        set_sensitive_fields(Contact, {"email": "mask"})

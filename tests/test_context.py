"""Request context: ``audit_context``, ``set_session_context``, ``require_user`` and ``disable_auditing``."""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit import (
    AuditContext,
    ContextTypeError,
    SQLAuditError,
    UserRequiredError,
    audit_context,
    clear_session_context,
    current_context,
    disable_auditing,
    get_resource_changes,
    set_session_context,
    track_table,
)


def declare_customer(base: type[DeclarativeBase]) -> type[Any]:
    """Declare a Customer tracking name and email; ``notes`` is never tracked."""

    @track_table(tracked_fields=["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))
        notes: Mapped[str | None] = mapped_column(String(100))

    return Customer


def insert_one(audit: Any, model: type[Any], **values: Any) -> int:
    """Insert one object of ``model`` in its own session and return its id."""
    with audit.Session() as session:
        obj = model(**values)
        session.add(obj)
        session.commit()
        return int(obj.id)


def rename(audit: Any, model: type[Any], resource_id: int, name: str) -> None:
    """Set the name of one object in its own session and commit."""
    with audit.Session() as session:
        session.get(model, resource_id).name = name
        session.commit()


def attribution(model: type[Any], resource_id: int) -> list[tuple[Any, str | None, Any, Any]]:
    """One resource's changes as (new value, user, reason, extra), oldest first."""
    changes = get_resource_changes(model, filter_resource_ids=resource_id)
    return [(c.new_value, c.changed_by, c.reason, c.extra) for c in reversed(changes)]


def count_rows(audit: Any, model: type[Any]) -> int:
    """How many rows the model's table holds, read on a fresh connection."""
    with audit.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def snapshot() -> tuple[Any, str | None, dict[str, Any]]:
    """The ambient context as plain values (user, reason, extra)."""
    context = current_context()
    return context.user_id, context.reason, dict(context.extra)


# --- audit_context on the rows -------------------------------------------------------------


def test_audit_context_sets_user_reason_and_extra_of_the_rows_inside(audit):
    """Rows written inside audit_context carry its user (not the callback's), reason and extra; outside, the callback's user and no context."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1
    customer_id = insert_one(audit, Customer, name="Ann")

    with audit_context(user_id=42, reason="ticket 7", request_id="r-1", attempt=2):
        rename(audit, Customer, customer_id, "Anna")
    rename(audit, Customer, customer_id, "Annie")

    assert attribution(Customer, customer_id) == [
        ("Ann", "1", None, {}),
        ("Anna", "42", "ticket 7", {"request_id": "r-1", "attempt": 2}),
        ("Annie", "1", None, {}),
    ]
    changes = get_resource_changes(Customer, filter_resource_ids=customer_id)
    assert all(isinstance(change.extra, dict) for change in changes)


def test_audit_context_with_user_none_records_no_user(audit):
    """audit_context(user_id=None) records a NULL user even when the callback returns one."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1

    with audit_context(user_id=None, reason="system"):
        customer_id = insert_one(audit, Customer, name="Ann")

    assert attribution(Customer, customer_id) == [("Ann", None, "system", {})]
    assert [row.changed_by for row in audit.rows()] == [None]


def test_audit_context_without_user_keeps_the_callback_user(audit):
    """An audit_context that gives only a reason leaves the user to the callback."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 5

    with audit_context(reason="import", batch=3):
        customer_id = insert_one(audit, Customer, name="Ann")

    assert attribution(Customer, customer_id) == [("Ann", "5", "import", {"batch": 3})]


def test_nested_contexts_merge_and_leaving_restores_the_outer(audit):
    """An inner context wins for the user and per extra key, keeps the outer reason, and leaving it restores the outer state."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = "callback"
    customer_id = insert_one(audit, Customer, name="v0")

    with audit_context(user_id=1, reason="outer", a=1, b=1):
        with audit_context(user_id=2, b=2, c=3):
            assert snapshot() == ("2", "outer", {"a": 1, "b": 2, "c": 3})
            rename(audit, Customer, customer_id, "v1")
        assert snapshot() == ("1", "outer", {"a": 1, "b": 1})
        rename(audit, Customer, customer_id, "v2")
    assert current_context() == AuditContext()
    rename(audit, Customer, customer_id, "v3")

    assert attribution(Customer, customer_id) == [
        ("v0", "callback", None, {}),
        ("v1", "2", "outer", {"a": 1, "b": 2, "c": 3}),
        ("v2", "1", "outer", {"a": 1, "b": 1}),
        ("v3", "callback", None, {}),
    ]


def test_inner_reason_replaces_the_outer_reason():
    """A reason given by the inner context replaces the outer one while it is active."""
    with audit_context(reason="outer"):
        with audit_context(reason="inner"):
            inner = current_context().reason
        outer = current_context().reason

    assert (inner, outer) == ("inner", "outer")


def test_context_is_restored_when_the_block_raises():
    """Leaving an audit_context through an exception still restores the outer state."""
    with audit_context(user_id="outer"):
        with pytest.raises(RuntimeError), audit_context(user_id="inner", k="v"):
            raise RuntimeError("boom")
        assert snapshot() == ("outer", None, {})
    assert current_context() == AuditContext()


# --- decorator and async forms -------------------------------------------------------------


def test_audit_context_decorates_a_plain_function(audit):
    """A function decorated with audit_context writes its rows with that context on every call, and the context ends with the call."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1
    customer_id = insert_one(audit, Customer, name="v0")

    @audit_context(user_id=9, reason="job", run="nightly")
    def job(name: str) -> tuple[Any, str | None, dict[str, Any]]:
        """Rename the customer."""
        rename(audit, Customer, customer_id, name)
        return snapshot()

    assert job("v1") == ("9", "job", {"run": "nightly"})
    assert current_context() == AuditContext()
    assert job("v2") == ("9", "job", {"run": "nightly"})
    assert job.__name__ == "job"
    assert job.__doc__ == "Rename the customer."
    assert attribution(Customer, customer_id) == [
        ("v0", "1", None, {}),
        ("v1", "9", "job", {"run": "nightly"}),
        ("v2", "9", "job", {"run": "nightly"}),
    ]


def test_audit_context_decorates_an_async_function():
    """An async function decorated with audit_context stays a coroutine function and sees the context inside, not after."""

    @audit_context(user_id=3, reason="async job", tenant="t1")
    async def job() -> tuple[Any, str | None, dict[str, Any]]:
        await asyncio.sleep(0)
        return snapshot()

    async def main() -> tuple[Any, Any]:
        inside = await job()
        return inside, current_context()

    assert inspect.iscoroutinefunction(job)
    inside, after = asyncio.run(main())
    assert inside == ("3", "async job", {"tenant": "t1"})
    assert after == AuditContext()
    assert current_context() == AuditContext()


def test_audit_context_works_with_async_with():
    """``async with audit_context(...)`` sets the context inside the block and restores it after."""

    async def main() -> tuple[Any, Any, Any]:
        async with audit_context(user_id="u-1", reason="api") as entered:
            await asyncio.sleep(0)
            inside = snapshot()
        return entered, inside, current_context()

    entered, inside, after = asyncio.run(main())
    assert (entered.user_id, entered.reason) == ("u-1", "api")
    assert inside == ("u-1", "api", {})
    assert after == AuditContext()


# --- isolation -----------------------------------------------------------------------------


def test_threads_each_see_only_their_own_context():
    """Two threads inside different audit_contexts at the same time each see only their own, and the main thread sees none."""
    both_inside = threading.Barrier(2)
    seen: dict[int, Any] = {}

    def work(worker: int) -> None:
        with audit_context(user_id=worker, reason=f"r{worker}", worker=worker):
            both_inside.wait(timeout=10)
            seen[worker] = snapshot()
            both_inside.wait(timeout=10)

    with audit_context(user_id="main"):
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(work, 1), pool.submit(work, 2)]:
                future.result(timeout=30)
        assert snapshot() == ("main", None, {})

    assert seen == {1: ("1", "r1", {"worker": 1}), 2: ("2", "r2", {"worker": 2})}


def test_asyncio_tasks_each_see_only_their_own_context():
    """Two asyncio tasks inside different audit_contexts, interleaved by gather, each see only their own."""

    async def work(worker: int, barrier: asyncio.Barrier) -> tuple[Any, ...]:
        async with audit_context(user_id=worker, worker=worker):
            await barrier.wait()
            seen = snapshot()
            await barrier.wait()
        return seen

    async def main() -> tuple[list[tuple[Any, ...]], Any]:
        barrier = asyncio.Barrier(2)
        seen = await asyncio.gather(work(1, barrier), work(2, barrier))
        return seen, current_context()

    seen, after = asyncio.run(main())
    assert seen == [("1", None, {"worker": 1}), ("2", None, {"worker": 2})]
    assert after == AuditContext()


@pytest.mark.backends("postgresql", "mariadb")
def test_threads_writing_at_once_record_their_own_context(audit):
    """Two threads, each with its own Session and audit_context, write at the same time and every row carries its thread's user and extra."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = "callback"
    rounds = 10
    start = threading.Barrier(2)

    def work(worker: int) -> None:
        with audit_context(user_id=f"user-{worker}", worker=worker), audit.Session() as session:
            start.wait(timeout=30)
            for n in range(rounds):
                customer = Customer(name=f"w{worker}-{n}")
                session.add(customer)
                session.commit()
                customer.email = f"w{worker}-{n}@example.com"
                session.commit()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(work, 1), pool.submit(work, 2)]:
            future.result(timeout=120)

    with audit.Session() as session:
        owner = {str(c.id): int(c.name[1]) for c in session.scalars(select(Customer))}
    changes = get_resource_changes(Customer)
    assert len(owner) == 2 * rounds
    assert len(changes) == 2 * rounds * 2
    for change in changes:
        worker = owner[change.resource_id]
        assert (change.changed_by, change.extra) == (f"user-{worker}", {"worker": worker})


# --- per-session context -------------------------------------------------------------------


def test_session_context_wins_over_the_ambient_context_for_its_session_only(audit):
    """set_session_context overrides the ambient context (key by key) for its session, leaves other sessions alone, and clear_session_context removes it."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1

    with audit.Session() as first, audit.Session() as second:
        set_session_context(first, user_id="billing-job", reason="monthly", job="j-1")
        with audit_context(user_id=9, reason="ambient", request="q-1"):
            a = Customer(name="A")
            first.add(a)
            first.commit()
            b = Customer(name="B")
            second.add(b)
            second.commit()
        clear_session_context(first)
        c = Customer(name="C")
        first.add(c)
        first.commit()
        ids = a.id, b.id, c.id

    assert attribution(Customer, ids[0]) == [
        ("A", "billing-job", "monthly", {"request": "q-1", "job": "j-1"})
    ]
    assert attribution(Customer, ids[1]) == [("B", "9", "ambient", {"request": "q-1"})]
    assert attribution(Customer, ids[2]) == [("C", "1", None, {})]


def test_session_context_with_user_none_records_no_user(audit):
    """set_session_context(user_id=None) records a NULL user for that session despite the callback and an ambient user."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1

    with audit.Session() as session, audit_context(user_id=2):
        set_session_context(session, user_id=None)
        customer = Customer(name="Ann")
        session.add(customer)
        session.commit()
        customer_id = customer.id

    assert attribution(Customer, customer_id) == [("Ann", None, None, {})]


# --- require_user --------------------------------------------------------------------------


def test_require_user_refuses_an_insert_with_no_user(audit):
    """With require_user on and no user, a tracked insert raises UserRequiredError naming the model and neither the row nor a change row is written."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.configure(require_user=True)
    audit.user = None

    with audit.Session() as session:
        session.add(Customer(name="Ann"))
        with pytest.raises(UserRequiredError, match="Customer"):
            session.commit()

    assert count_rows(audit, Customer) == 0
    assert audit.rows() == []


def test_require_user_refuses_an_update_with_no_user(audit):
    """With require_user on and no user, a tracked update raises UserRequiredError and the stored value and change rows are unchanged."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.configure(require_user=True)
    audit.user = None
    with audit_context(user_id=1):
        customer_id = insert_one(audit, Customer, name="Ann")

    with audit.Session() as session:
        session.get(Customer, customer_id).name = "Anna"
        with pytest.raises(UserRequiredError, match="Customer"):
            session.commit()

    with audit.engine.connect() as connection:
        stored = connection.execute(select(Customer.name)).scalar_one()
    assert stored == "Ann"
    assert [(row.operation, row.new_value is not None) for row in audit.rows()] == [
        ("insert", True)
    ]


def test_require_user_accepts_a_user_from_audit_context(audit):
    """With require_user on, a tracked change made inside audit_context(user_id=...) commits with that user."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.configure(require_user=True)
    audit.user = None

    with audit_context(user_id=7):
        customer_id = insert_one(audit, Customer, name="Ann")

    assert count_rows(audit, Customer) == 1
    assert attribution(Customer, customer_id) == [("Ann", "7", None, {})]


def test_require_user_ignores_a_change_of_untracked_fields_only(audit):
    """With require_user on and no user, a change to an untracked field only records nothing, so it commits."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.configure(require_user=True)
    audit.user = None
    with audit_context(user_id=1):
        customer_id = insert_one(audit, Customer, name="Ann")

    with audit.Session() as session:
        session.get(Customer, customer_id).notes = "vip"
        session.commit()

    with audit.engine.connect() as connection:
        assert connection.execute(select(Customer.notes)).scalar_one() == "vip"
    assert len(audit.rows()) == 1


# --- disable_auditing ----------------------------------------------------------------------


def test_disable_auditing_records_nothing_and_capture_resumes_after(audit):
    """Changes inside disable_auditing commit but record nothing; after it, capture resumes with the true old value."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1

    with disable_auditing():
        customer_id = insert_one(audit, Customer, name="Ann")
        rename(audit, Customer, customer_id, "Anna")
    assert audit.rows() == []
    assert count_rows(audit, Customer) == 1

    rename(audit, Customer, customer_id, "Annie")

    changes = get_resource_changes(Customer)
    assert [(c.operation, c.old_value, c.new_value) for c in changes] == [
        ("update", "Anna", "Annie")
    ]


def test_disable_auditing_works_as_a_decorator(audit):
    """A function decorated with disable_auditing() records nothing on each call, and capture works after it returns."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    @disable_auditing()
    def backfill(name: str) -> int:
        return insert_one(audit, Customer, name=name)

    backfill("Ann")
    backfill("Bob")
    assert audit.rows() == []
    assert count_rows(audit, Customer) == 2

    carol_id = insert_one(audit, Customer, name="Carol")
    assert [(row.resource_id, row.new_value is not None) for row in audit.rows()] == [
        (str(carol_id), True)
    ]


def test_disable_auditing_in_one_thread_does_not_affect_another(audit):
    """While one thread is inside disable_auditing, another thread's changes are still recorded."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    disabled = threading.Event()
    other_done = threading.Event()
    ids: dict[str, int] = {}

    def maintenance() -> None:
        with disable_auditing():
            disabled.set()
            assert other_done.wait(timeout=30)
            ids["quiet"] = insert_one(audit, Customer, name="Quiet")

    def request() -> None:
        assert disabled.wait(timeout=30)
        ids["loud"] = insert_one(audit, Customer, name="Loud")
        other_done.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(maintenance), pool.submit(request)]:
            future.result(timeout=60)

    assert count_rows(audit, Customer) == 2
    assert {row.resource_id for row in audit.rows()} == {str(ids["loud"])}


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", [1.5, True, object()], ids=["float", "bool", "object"])
def test_audit_context_rejects_a_user_id_of_another_type(user_id):
    """A user id that is not str, int, UUID or None raises ContextTypeError naming user_id when the context is built."""
    with pytest.raises(ContextTypeError, match="user_id") as caught:
        audit_context(user_id=user_id)

    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, SQLAuditError)
    assert current_context() == AuditContext()


@pytest.mark.parametrize("value", [{"a"}, object()], ids=["set", "object"])
def test_audit_context_rejects_metadata_that_is_not_json(value):
    """Extra metadata that cannot be stored as JSON raises ContextTypeError naming its key."""
    with pytest.raises(ContextTypeError, match="tags"):
        audit_context(user_id=1, tags=value)


def test_audit_context_rejects_a_non_str_reason():
    """A reason that is not a str raises ContextTypeError naming reason."""
    with pytest.raises(ContextTypeError, match="reason"):
        audit_context(reason=42)


def test_audit_context_rejects_a_float_that_json_cannot_hold():
    """A NaN in the extra metadata, which standard JSON cannot hold, raises ContextTypeError naming its key."""
    with pytest.raises(ContextTypeError, match="ratio"):
        audit_context(ratio=float("nan"))


def test_set_session_context_rejects_bad_input_and_keeps_the_session_unchanged():
    """set_session_context with a bad user id raises ContextTypeError and sets nothing on the session."""
    session = Session()

    with pytest.raises(ContextTypeError, match="user_id"):
        set_session_context(session, user_id=2.5)

    assert dict(session.info) == {}


def test_one_audit_context_instance_shared_by_threads_and_nested_in_itself():
    """A single audit_context object can be entered by several threads at once, and inside itself."""
    import threading

    from sqlaudit import audit_context, current_context

    shared = audit_context(user_id="system")
    barrier = threading.Barrier(4)
    seen, errors = [], []

    def work():
        try:
            with shared:
                barrier.wait(timeout=5)
                with shared:
                    seen.append(current_context().user_id)
                seen.append(current_context().user_id)
            seen.append(current_context().user_id)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen.count("system") == 8
    assert len(seen) == 12


def test_entering_many_contexts_leaves_no_residue():
    """Thousands of audit_context blocks leave the thread's context as they found it."""
    import contextvars

    from sqlaudit import audit_context

    before = len(contextvars.copy_context())
    for user in range(2000):
        with audit_context(user_id=user):
            pass
    assert len(contextvars.copy_context()) <= before + 2


def test_audit_context_refuses_to_decorate_generator_functions():
    """Decorating a generator function, whose body would run outside the context, is refused with the fix."""
    from sqlaudit import ContextTypeError, audit_context

    def rows():
        yield 1

    async def async_rows():
        yield 1

    for generator_function in (rows, async_rows):
        with pytest.raises(ContextTypeError, match="generator"):
            audit_context(user_id=1)(generator_function)

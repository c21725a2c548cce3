"""Every documented kind of ``session_factory``, checked by ``mypy --strict`` in CI.

Run ``python examples/session_factories.py``: it builds one configuration per
factory and opens a Session from each synchronous one.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from sqlaudit import SQLAuditConfig

engine = create_engine("sqlite://")
SessionLocal = sessionmaker(engine)
async_engine = create_async_engine("sqlite+aiosqlite://")
AsyncSessionLocal = async_sessionmaker(async_engine, expire_on_commit=False)


def make_session() -> Session:
    """A plain function returning a Session."""
    return SessionLocal()


def get_db() -> Iterator[Session]:
    """FastAPI's style: a generator function yielding one Session."""
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


def get_db_generator() -> Generator[Session, None, None]:
    """The same, annotated as a Generator."""
    with SessionLocal() as db:
        yield db


async def get_async_db() -> AsyncIterator[AsyncSession]:
    """FastAPI's async style: an async generator function yielding an AsyncSession."""
    async with AsyncSessionLocal() as db:
        yield db


async def get_async_db_generator() -> AsyncGenerator[AsyncSession, None]:
    """The same, annotated as an AsyncGenerator."""
    async with AsyncSessionLocal() as db:
        yield db


SYNC_CONFIGS: list[SQLAuditConfig] = [
    SQLAuditConfig(session_factory=SessionLocal),
    SQLAuditConfig(session_factory=make_session),
    SQLAuditConfig(session_factory=get_db),
    SQLAuditConfig(session_factory=get_db_generator),
    SQLAuditConfig(session_factory=lambda: SessionLocal()),
]
ASYNC_CONFIGS: list[SQLAuditConfig] = [
    SQLAuditConfig(session_factory=AsyncSessionLocal, create_table=False),
    SQLAuditConfig(session_factory=get_async_db, create_table=False),
    SQLAuditConfig(session_factory=get_async_db_generator, create_table=False),
]


if __name__ == "__main__":
    for config in SYNC_CONFIGS:
        with config.open_session() as session:
            print(type(session).__name__, "from", config.session_factory)
    print(len(ASYNC_CONFIGS), "async factories accepted (read with sqlaudit.asyncio)")

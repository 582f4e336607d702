"""Small named values the gateway creates once and keeps (e.g. the URL signing secret).

They live in the database, not in a file, so every node of a PostgreSQL deployment shares
them; on SQLite the database is itself the file under the data directory.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from imagegate.storage import db
from imagegate.storage.db import settings, utcnow


def get_setting(engine: Engine, name: str) -> str | None:
    with db.read(engine) as conn:
        return conn.execute(select(settings.c.value).where(settings.c.name == name)).scalar()


def get_or_create_setting(engine: Engine, name: str, factory: Callable[[], str]) -> str:
    """The stored value of ``name``, creating it with ``factory()`` the first time.

    Two processes starting at once both try to insert; the loser reads the winner's value.
    """
    found = get_setting(engine, name)
    if found is not None:
        return found
    try:
        with db.write(engine) as conn:
            found = conn.execute(select(settings.c.value).where(settings.c.name == name)).scalar()
            if found is not None:
                return found
            value = factory()
            conn.execute(settings.insert().values(name=name, value=value, created_at=utcnow()))
            return value
    except IntegrityError:
        found = get_setting(engine, name)
        if found is None:
            raise
        return found

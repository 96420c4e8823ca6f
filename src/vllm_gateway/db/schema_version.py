"""Which schema revision a database is at, and which one this gateway needs, without Alembic.

Alembic (with Mako) costs a worker about 11 MiB and tens of milliseconds to import; a gateway
whose database is already at head has no use for it. The head is read from the newest
migration file (the files are numbered, the chain is linear: tests/test_db.py checks that it
is Alembic's head), the current revision from Alembic's own `alembic_version` table.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

VERSIONS = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"', re.MULTILINE)


def head_revision() -> str:
    """The revision of the newest migration: the schema this gateway needs."""
    newest = max(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    found = _REVISION.search(newest.read_text())
    if found is None:
        raise RuntimeError(f"{newest.name} declares no revision")
    return found.group(1)


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at (None: no gateway schema yet).

    Run it in a transaction of its own: on PostgreSQL a missing table aborts the transaction.
    """
    try:
        row = (await connection.execute(text("SELECT version_num FROM alembic_version"))).first()
    except DBAPIError:  # no such table: an empty database
        return None
    return None if row is None else str(row[0])

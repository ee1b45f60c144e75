"""Reading back the one row a query always returns, typed as present."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import Row


def one_row(cursor: Cursor[Row]) -> Row:
    """The row of a query that always returns exactly one: `count(*)`, `now()`, a lock call.

    psycopg types `fetchone()` as optional because a query may return nothing; these cannot, so
    a missing row is a bug and raises here instead of becoming a `None` that fails further on.
    """
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a query that always returns a row returned none")
    return row

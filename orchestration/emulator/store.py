"""Compact SQLite storage of emulator objects, indexed the way Stripe lists them."""

from __future__ import annotations

import builtins
import itertools
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

# Compact JSON bytes; a Fragment is JSON serialized earlier, nested as it is.
dumps = orjson.dumps
loads = orjson.loads
Fragment = orjson.Fragment

_SCHEMA = """
create table obj (
    n integer primary key,
    kind text not null,
    id text not null,
    livemode integer not null,
    created integer not null,
    customer text,
    status text,
    deleted integer not null default 0,
    data blob not null
);
"""

# Created after the bulk load: building indexes once is much faster than maintaining them per row.
# Every index ends with the row number n implicitly, so lists order ties on `created` by n:
# a stable order, which is all Stripe promises, at the cost of integer rather than text keys.
_INDEXES = """
create index if not exists obj_list on obj (kind, livemode, deleted, created);
"""
# Only lists filtered by customer need this one: built on first use, not at start-up (0.6 s at
# 100k customers, most runs never ask).
_CUSTOMER_INDEX = """
create index if not exists obj_customer on obj (kind, customer, created)
    where customer is not null;
"""
# Lifecycle ticks pick a random object of a status (Store.pick): a count and an offset that walk
# this index alone, not every row of the kind with a lookup of its status each (~2 s a pick at 1M
# customers, under the store's lock, which held every API request meanwhile). Built on first use.
_STATUS_INDEX = """
create index if not exists obj_status on obj (kind, livemode, deleted, status, created);
"""
# A file store records what it holds, so a later emulator with the same options reuses it.
_META = "create table if not exists meta (key text primary key, value text not null)"

Row = tuple[int, str, str, int, int, str | None, str | None, int, bytes]
KEY_CHARS = 8  # hex tail: 4 billion rows


def encode_key(n: int) -> str:
    """The fixed-width hex tail that ends every id the emulator makes."""
    return f"{n:08x}"


def decode_key(obj_id: str) -> int | None:
    """The row number an id's tail encodes (None for ids it did not make, such as coupons)."""
    if len(obj_id) <= KEY_CHARS:
        return None
    try:
        return int(obj_id[-KEY_CHARS:], 16)
    except ValueError:
        return None


@dataclass
class ListQuery:
    """Filters of one list request, already validated."""

    kind: str
    livemode: bool
    limit: int = 10
    created: dict[str, int] = field(default_factory=dict)
    statuses: list[str] | None = None
    exclude_status: str | None = None
    customer: str | None = None
    type_globs: list[str] | None = None
    not_before: int | None = None
    after: tuple[int, int] | None = None  # (created, n) of the cursor object
    before: tuple[int, int] | None = None


_CREATED_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


@contextmanager
def all_stores_quiet() -> Iterator[None]:
    """Holds every store's lock, so no thread is inside SQLite while the process forks."""
    with ExitStack() as stack:
        for store in list(_STORES):
            stack.enter_context(store.lock)
        yield


class Store:
    """All objects of one account, both modes, as compact JSON rows in SQLite."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("pragma journal_mode=off")
        self.db.execute("pragma synchronous=off")
        self.db.execute("pragma temp_store=memory")
        self.db.execute("pragma threads=4")  # parallel sorter for the index builds
        # In memory the page cache is the database; a file (1M+ customers) keeps RSS bounded
        # and leaves the rest to the OS page cache.
        self.db.execute(f"pragma cache_size={-1_000_000 if path == ':memory:' else -200_000}")
        if not self._has_table("obj"):
            self.db.executescript(_SCHEMA)
        self.db.execute(_META)
        self.lock = threading.RLock()
        self._customer_index = self._has_index("obj_customer")
        self._status_index = self._has_index("obj_status")
        self.reusable = False  # set once a file store holds a complete, unchanged dataset
        _STORES.add(self)
        self.next_key = 1
        self._keys = itertools.count(1)
        # Ids chosen by people (coupons) cannot carry their row number: looked up here instead.
        self.named: dict[tuple[str, str], int] = {}

    def _has_table(self, name: str) -> bool:
        sql = "select 1 from sqlite_master where type='table' and name=?"
        return self.db.execute(sql, (name,)).fetchone() is not None

    def _has_index(self, name: str) -> bool:
        sql = "select 1 from sqlite_master where type='index' and name=?"
        return self.db.execute(sql, (name,)).fetchone() is not None

    def meta(self) -> dict[str, str]:
        """What a file store says it holds (empty for a new store)."""
        with self.lock:
            return dict(self.db.execute("select key, value from meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        """Records what the store holds."""
        with self.lock:
            self.db.executemany("insert or replace into meta values (?, ?)", values.items())

    def clear(self) -> None:
        """Empties a store (a file that held another dataset)."""
        with self.lock:
            self.db.execute("drop table if exists obj")
            self.db.execute("delete from meta")
            self.db.executescript(_SCHEMA)
            self._customer_index = self._status_index = False

    def _changed(self) -> None:
        # A file whose data changed after generation (ticks, endpoints) is not reused. Callers
        # hold self.lock.
        if self.reusable:
            self.reusable = False
            self.db.execute("delete from meta where key='complete'")

    def max_key(self) -> int:
        """The highest row number in use (0 when empty)."""
        with self.lock:
            return self.db.execute("select coalesce(max(n), 0) from obj").fetchone()[0]

    def allocate(self) -> int:
        """A fresh row number; ids end with its encoding so lookups need no id index."""
        # itertools.count is atomic under the GIL: no lock on the generation hot path.
        n = next(self._keys)
        self.next_key = max(self.next_key, n + 1)
        return n

    def restart_keys(self, start: int) -> None:
        """Continues numbering rows from `start` (chunks of the generator own disjoint ranges)."""
        self._keys = itertools.count(start)
        self.next_key = start

    def copy_from(self, path: str) -> None:
        """Appends every row of another store's SQLite file (a generator worker's chunk)."""
        with self.lock:
            self.db.execute("attach database ? as chunk", (path,))
            self.db.execute("insert into obj select * from chunk.obj")
            self.db.execute("detach database chunk")

    def key_of(self, kind: str, obj_id: str) -> int | None:
        """The row number of an id, for a primary-key lookup (which still checks kind and id)."""
        named = self.named.get((kind, obj_id))
        return named if named is not None else decode_key(obj_id)

    def name(self, kind: str, obj_id: str) -> int:
        """Allocates a row number for an id the emulator did not make."""
        n = self.named[(kind, obj_id)] = self.allocate()
        return n

    def bulk_insert(self, rows: Iterable[Row]) -> None:
        """Inserts many rows in one transaction (generation)."""
        with self.lock:
            self.db.execute("begin")
            self.db.executemany("insert into obj values (?,?,?,?,?,?,?,?,?)", rows)
            self.db.execute("commit")

    def upsert_rows(self, rows: Iterable[Row]) -> None:
        """Inserts or replaces rows (after the indexes exist)."""
        with self.lock:
            self._changed()
            self.db.executemany("insert or replace into obj values (?,?,?,?,?,?,?,?,?)", rows)

    def create_indexes(self) -> None:
        """Builds the list indexes (after the bulk load)."""
        with self.lock:
            self.db.executescript(_INDEXES)

    def _by_customer_ready(self) -> None:
        # Callers hold self.lock.
        if not self._customer_index:
            self.db.executescript(_CUSTOMER_INDEX)
            self._customer_index = True

    def put(
        self, kind: str, obj: dict[str, Any], *, status: str | None = None, deleted: bool = False
    ) -> None:
        """Inserts or replaces one object."""
        obj_id = obj["id"]
        customer = obj.get("customer")
        with self.lock:
            n = self.key_of(kind, obj_id)
            if n is None or n >= self.next_key or not self._owns(n, kind, obj_id):
                n = self.name(kind, obj_id)
            self._changed()
            row = (
                n,
                kind,
                obj_id,
                int(obj["livemode"]),
                obj["created"],
                customer if isinstance(customer, str) else None,
                status,
                int(deleted),
                dumps(obj),
            )
            self.db.execute("insert or replace into obj values (?,?,?,?,?,?,?,?,?)", row)

    def _owns(self, n: int, kind: str, obj_id: str) -> bool:
        # A row number is this id's when its row holds the id, or is still empty (a new object).
        row = self.db.execute("select kind, id from obj where n=?", (n,)).fetchone()
        return row is None or row == (kind, obj_id)

    def get(self, kind: str, obj_id: str) -> tuple[dict[str, Any], bool] | None:
        """Returns (compact object, deleted) or None."""
        n = self.key_of(kind, obj_id)
        if n is None:
            return None
        with self.lock:
            row = self.db.execute(
                "select data, deleted from obj where n=? and kind=? and id=?", (n, kind, obj_id)
            ).fetchone()
        return None if row is None else (loads(row[0]), bool(row[1]))

    def get_many(self, refs: list[tuple[str, str]]) -> dict[str, tuple[dict[str, Any], bool]]:
        """(compact object, deleted) by id for many (kind, id) pairs, in one query."""
        keys = {self.key_of(kind, obj_id): (kind, obj_id) for kind, obj_id in refs}
        keys.pop(None, None)
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self.lock:
            rows = self.db.execute(
                f"select n, kind, id, data, deleted from obj where n in ({marks})",  # noqa: S608
                list(keys),
            ).fetchall()
        return {
            obj_id: (loads(data), bool(deleted))
            for n, kind, obj_id, data, deleted in rows
            if keys.get(n) == (kind, obj_id)
        }

    def position(self, kind: str, obj_id: str) -> tuple[int, int, int, str | None] | None:
        """Returns (created, n, livemode, customer) of an object, for cursors."""
        n = self.key_of(kind, obj_id)
        if n is None:
            return None
        with self.lock:
            return self.db.execute(
                "select created, n, livemode, customer from obj where n=? and kind=? and id=?",
                (n, kind, obj_id),
            ).fetchone()

    def list(self, q: ListQuery) -> tuple[list[dict[str, Any]], bool]:
        """One page, newest first, and whether more rows follow in the page's direction."""
        where = ["kind=?", "livemode=?", "deleted=0"]
        args: list[Any] = [q.kind, int(q.livemode)]
        for op, value in q.created.items():
            where.append(f"created {_CREATED_OPS[op]} ?")
            args.append(value)
        if q.not_before is not None:
            where.append("created >= ?")
            args.append(q.not_before)
        if q.customer is not None:
            where.append("customer=?")
            args.append(q.customer)
        if q.statuses is not None:
            where.append(f"status in ({','.join('?' * len(q.statuses))})")
            args.extend(q.statuses)
        if q.exclude_status is not None:
            where.append("status != ?")
            args.append(q.exclude_status)
        if q.type_globs:
            where.append("(" + " or ".join("status glob ?" for _ in q.type_globs) + ")")
            args.extend(q.type_globs)
        order = "desc"
        if q.after is not None:
            where.append("(created, n) < (?, ?)")
            args.extend(q.after)
        elif q.before is not None:
            where.append("(created, n) > (?, ?)")
            args.extend(q.before)
            order = "asc"
        # Only fixed fragments are joined; every value is a bound parameter.
        # Without statistics SQLite prefers obj_list even for one customer's few rows.
        index = "indexed by obj_customer" if q.customer is not None else ""
        sql = f"select data from obj {index} where {' and '.join(where)} order by created {order}, n {order} limit ?"  # noqa: E501, S608
        args.append(q.limit + 1)
        with self.lock:
            if q.customer is not None:
                self._by_customer_ready()
            rows = self.db.execute(sql, args).fetchall()
        has_more = len(rows) > q.limit
        rows = rows[: q.limit]
        if order == "asc":
            rows.reverse()
        return [loads(r[0]) for r in rows], has_more

    def ids(self, kind: str, livemode: bool, *, deleted: bool) -> Iterator[tuple[str, bytes]]:
        """Every (id, data) of a kind and mode, deleted or not."""
        with self.lock:
            rows = self.db.execute(
                "select id, data from obj where kind=? and livemode=? and deleted=?",
                (kind, int(livemode), int(deleted)),
            ).fetchall()
        yield from rows

    def pick(self, kind: str, livemode: bool, status: str | None, index: float) -> dict | None:
        """A not-deleted object at relative position index (0..1) among those with status."""
        cond = "kind=? and livemode=? and deleted=0" + (" and status=?" if status else "")
        args: list[Any] = [kind, int(livemode)] + ([status] if status else [])
        with self.lock:
            if status and not self._status_index:
                self.db.executescript(_STATUS_INDEX)
                self._status_index = True
            (count,) = self.db.execute(f"select count(*) from obj where {cond}", args).fetchone()  # noqa: S608
            if not count:
                return None
            row = self.db.execute(
                f"select data from obj where {cond} order by created, n limit 1 offset ?",  # noqa: S608
                [*args, int(index * count)],
            ).fetchone()
        return loads(row[0])

    # builtins.list: in the class body `list` is the method above.
    def by_customer(self, kind: str, customer: str) -> builtins.list[dict[str, Any]]:
        """Every not-deleted object of a kind belonging to a customer."""
        with self.lock:
            self._by_customer_ready()
            rows = self.db.execute(
                "select data from obj where kind=? and customer=? and deleted=0", (kind, customer)
            ).fetchall()
        return [loads(r[0]) for r in rows]

"""The SQL both relational backends share: tables, statements and the
checks of :mod:`datn.store.base`, written once with ``?`` placeholders.

A backend supplies a connection's two operations: run read statements, and
run a function inside one transaction whose commit is durable when it
returns (SQLite: WAL with ``synchronous=FULL``; PostgreSQL:
``synchronous_commit=on``); and maps its driver's exceptions to
:class:`~datn.store.base.StoreError`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from datn.store.base import (
    FIRST_PAGE,
    SCHEMA_VERSION,
    Commit,
    Credential,
    EvidenceRecord,
    ExecutionRecord,
    InboundWindow,
    LedgerRecord,
    LinkRecord,
    OrderRecord,
    OutboxFrame,
    Page,
    Store,
    Stored,
    StoreError,
    check_limit,
    check_page,
    check_snapshot,
    check_snapshot_position,
    check_tail,
    checksum,
    verify_journal,
)

T = TypeVar("T")
Row = tuple[Any, ...]

SNAPSHOTS_KEPT: Final = 2
"""Snapshots kept: the latest, and the one before it for an operator who
needs to look back. The journal itself is never pruned."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a backend spells what the tables need."""

    blob: str
    """The bytes type."""
    key: str
    """A 64-bit integer primary key: in SQLite ``INTEGER PRIMARY KEY``, the
    table's own row id, so that an insert writes one b-tree instead of the
    table and a separate index of its key."""
    compact: str = ""
    """After the tables with short rows and a text key: SQLite's ``WITHOUT
    ROWID`` keeps them in the key's b-tree alone, for the same reason."""


def schema(dialect: Dialect) -> list[str]:
    """The tables, as ``dialect`` spells them.

    Every page a commit changes is written to SQLite's write-ahead log
    before its fsync, so each table and index a commit touches costs it a
    page: the integer keys are the tables' row ids, and small text-keyed
    tables have no separate row id. Stores made before these were spelt so
    keep their tables (``IF NOT EXISTS``); the layout is the same to every
    statement, so they read and write as before."""
    blob, key, compact = dialect.blob, dialect.key, dialect.compact
    return [
        "CREATE TABLE IF NOT EXISTS datn_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
        + compact,
        f"CREATE TABLE IF NOT EXISTS journal (position {key}, entry {blob} NOT NULL,"
        " checksum BIGINT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS snapshots (position {key}, data {blob} NOT NULL,"
        " checksum BIGINT NOT NULL)",
        # Snapshots in parts (added to layout 1 without a change of version:
        # a store written before has whole snapshots only, and reads them).
        "CREATE TABLE IF NOT EXISTS snapshot_parts (position BIGINT NOT NULL,"
        f" part BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (position, part))",
        f"CREATE TABLE IF NOT EXISTS orders (order_id {key},"
        " trader_id TEXT NOT NULL, client_order_id TEXT NOT NULL, product_id TEXT NOT NULL,"
        " status TEXT NOT NULL, is_open BOOLEAN NOT NULL, created_ms BIGINT NOT NULL,"
        f" updated_ms BIGINT NOT NULL, body {blob} NOT NULL,"
        " UNIQUE (trader_id, client_order_id))",
        "CREATE INDEX IF NOT EXISTS orders_by_trader ON orders (trader_id, order_id)",
        f"CREATE TABLE IF NOT EXISTS executions (seq {key},"
        " execution_id TEXT NOT NULL UNIQUE, order_id BIGINT NOT NULL, trader_id TEXT NOT NULL,"
        f" product_id TEXT NOT NULL, at_ms BIGINT NOT NULL, body {blob} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS executions_by_trader ON executions (trader_id, seq)",
        "CREATE TABLE IF NOT EXISTS ledger (entry_id TEXT PRIMARY KEY, at_ms BIGINT NOT NULL,"
        f" body {blob} NOT NULL){compact}",
        f"CREATE TABLE IF NOT EXISTS evidence (seq {key}, peer TEXT NOT NULL,"
        f" at_ms BIGINT NOT NULL, kind TEXT NOT NULL, frame {blob} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS evidence_by_peer ON evidence (peer, at_ms)",
        # Peer links (added to layout 1 without a change of version: a store
        # written before has none, and is given them empty).
        "CREATE TABLE IF NOT EXISTS link_out (peer TEXT PRIMARY KEY, last_seq BIGINT NOT NULL,"
        f" acked BIGINT NOT NULL){compact}",
        "CREATE TABLE IF NOT EXISTS outbox (peer TEXT NOT NULL, first_seq BIGINT NOT NULL,"
        f" last_seq BIGINT NOT NULL, frame {blob} NOT NULL, PRIMARY KEY (peer, first_seq))",
        "CREATE TABLE IF NOT EXISTS link_in (peer TEXT PRIMARY KEY, contiguous BIGINT NOT NULL,"
        f" above {blob} NOT NULL){compact}",
        "CREATE TABLE IF NOT EXISTS peer_addresses (peer TEXT PRIMARY KEY, address TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS credentials (key_id TEXT PRIMARY KEY,"
        f" trader_id TEXT NOT NULL, kind TEXT NOT NULL, material {blob} NOT NULL,"
        " created_ms BIGINT NOT NULL, revoked BOOLEAN NOT NULL)",
        # Whether a trader exists is asked by trader id (an operator's deposit):
        # an index, so the question does not read every key the node holds.
        "CREATE INDEX IF NOT EXISTS credentials_by_trader ON credentials (trader_id)",
    ]


_UPSERT_ORDER: Final = (
    "INSERT INTO orders (order_id, trader_id, client_order_id, product_id, status, is_open,"
    " created_ms, updated_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,"
    " is_open = excluded.is_open, updated_ms = excluded.updated_ms, body = excluded.body"
    " WHERE orders.trader_id = excluded.trader_id"
    " AND orders.client_order_id = excluded.client_order_id"
)


def _order_conflict(tx: Executor, orders: list[OrderRecord]) -> str:
    """What to say of a group of ``orders`` of which one changed no row."""
    for order in orders:
        stored = tx.run(
            "SELECT trader_id, client_order_id FROM orders WHERE order_id = ?", (order.order_id,)
        )
        if stored and tuple(stored[0]) != (order.trader_id, order.client_order_id):
            return f"order {order.order_id} is stored for another trader or client order id"
    return "an order is stored for another trader or client order id"


_ORDER_COLUMNS: Final = (
    "order_id, trader_id, client_order_id, product_id, status, is_open, created_ms,"
    " updated_ms, body"
)
_EXECUTION_COLUMNS: Final = "execution_id, order_id, trader_id, product_id, at_ms, body, seq"


class Executor:
    """What a transaction function may do: run a statement and read its
    rows, or run one statement for many rows of parameters at once (one
    round trip where the driver can) and learn how many rows it changed."""

    def __init__(
        self,
        run: Callable[[str, Sequence[Any]], list[Row]],
        run_many: Callable[[str, Sequence[Sequence[Any]]], int],
    ) -> None:
        self.run = run
        self.run_many = run_many


class SqlStore(Store):
    """The shared logic; see the module docstring."""

    def __init__(self) -> None:
        self._closed = False

    # --------------------------------------------------- backend hooks

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of one read statement (``?`` placeholders)."""

    @abstractmethod
    def _transaction(self, work: Callable[[Executor], T]) -> T:
        """Run ``work`` in one transaction, committed durably when it returns
        and rolled back if it raises; driver errors become StoreErrors."""

    def _transaction_if_free(self, work: Callable[[Executor], int]) -> int | None:
        """As :meth:`_transaction` if no other transaction is in flight and
        the backend's commit is local; None (nothing run) otherwise."""
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("misuse", "the store is closed")

    def _create(self, dialect: Dialect) -> None:
        """Create the tables if new; refuse a store of another layout."""

        def create(tx: Executor) -> None:
            for statement in schema(dialect):
                tx.run(statement, ())
            rows = tx.run("SELECT value FROM datn_meta WHERE key = 'schema_version'", ())
            if not rows:
                tx.run(
                    "INSERT INTO datn_meta (key, value) VALUES ('schema_version', ?),"
                    " ('last_position', 0), ('executions', 0), ('evidence', 0)",
                    (SCHEMA_VERSION,),
                )
            elif rows[0][0] != SCHEMA_VERSION:
                raise StoreError(
                    "corrupt",
                    f"the store's tables are of layout {rows[0][0]}; this datn reads "
                    f"layout {SCHEMA_VERSION}",
                )

        self._transaction(create)

    # ------------------------------------------------------------ journal

    def load(self) -> Stored:
        self._check_open()

        def read(tx: Executor) -> Stored:
            last_written = _meta(tx, "last_position")
            snapshot: bytes | None = None
            start = 0
            rows = tx.run(
                "SELECT position, data, checksum FROM snapshots ORDER BY position DESC LIMIT 1", ()
            )
            if rows:
                start, data, stored = rows[0][0], bytes(rows[0][1]), rows[0][2]
                parts = [data]
                if not data:
                    parts = [
                        bytes(part)
                        for (part,) in tx.run(
                            "SELECT data FROM snapshot_parts WHERE position = ? ORDER BY part",
                            (start,),
                        )
                    ]
                data = check_snapshot(start, parts, stored)
                if start > last_written:
                    raise StoreError(
                        "corrupt",
                        f"the latest snapshot is after entry {start}, but the journal's last "
                        f"commit ended at {last_written}",
                    )
                snapshot = data
            journal = tx.run(
                "SELECT position, entry, checksum FROM journal WHERE position > ?"
                " ORDER BY position",
                (start,),
            )
            entries = verify_journal(start + 1, [(p, bytes(e), c) for p, e, c in journal])
            found = tx.run("SELECT MAX(position) FROM journal", ())[0][0] or 0
            check_tail(last_written, found)
            return Stored(snapshot, start, entries)

        return self._transaction(read)

    def commit(self, commit: Commit) -> int:
        self._check_open()
        if not commit:
            return self.position()
        return self._transaction(self._writing(commit))

    def commit_if_free(self, commit: Commit) -> int | None:
        self._check_open()
        if not commit:
            return None
        return self._transaction_if_free(self._writing(commit))

    def _writing(self, commit: Commit) -> Callable[[Executor], int]:
        """The work of writing ``commit`` in a transaction."""

        def write(tx: Executor) -> int:
            first = _meta(tx, "last_position") + 1
            rows = [
                (first + i, bytes(data), checksum(first + i, data))
                for i, data in enumerate(commit.entries)
            ]
            if rows:
                tx.run_many(
                    "INSERT INTO journal (position, entry, checksum) VALUES (?, ?, ?)", rows
                )
            position = first - 1 + len(rows)
            tx.run("UPDATE datn_meta SET value = ? WHERE key = 'last_position'", (position,))
            if commit.orders:
                # One statement for the group (a statement each cost the
                # writer about as much again as the rest of an order's
                # rows); an order kept for another trader or client order
                # id changes no row, so the count tells.
                changed = tx.run_many(
                    _UPSERT_ORDER,
                    [
                        (
                            order.order_id,
                            order.trader_id,
                            order.client_order_id,
                            order.product_id,
                            order.status,
                            order.open,
                            order.created_ms,
                            order.updated_ms,
                            order.body,
                        )
                        for order in commit.orders
                    ],
                )
                if changed != len(commit.orders):
                    raise StoreError("conflict", _order_conflict(tx, commit.orders))
            if commit.executions:
                first_seq = _meta(tx, "executions") + 1
                tx.run_many(
                    f"INSERT INTO executions ({_EXECUTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.execution_id, r.order_id, r.trader_id, r.product_id, r.at_ms, r.body, n)
                        for n, r in enumerate(commit.executions, start=first_seq)
                    ],
                )
                last = first_seq - 1 + len(commit.executions)
                tx.run("UPDATE datn_meta SET value = ? WHERE key = 'executions'", (last,))
            if commit.ledger:
                tx.run_many(
                    "INSERT INTO ledger (entry_id, at_ms, body) VALUES (?, ?, ?)",
                    [(e.entry_id, e.at_ms, e.body) for e in commit.ledger],
                )
            if commit.evidence:
                first_seq = _meta(tx, "evidence") + 1
                tx.run_many(
                    "INSERT INTO evidence (seq, peer, at_ms, kind, frame) VALUES (?, ?, ?, ?, ?)",
                    [
                        (n, f.peer, f.at_ms, f.kind, f.frame)
                        for n, f in enumerate(commit.evidence, start=first_seq)
                    ],
                )
                last = first_seq - 1 + len(commit.evidence)
                tx.run("UPDATE datn_meta SET value = ? WHERE key = 'evidence'", (last,))
            if commit.outbox:
                _write_outbox(tx, commit.outbox)
            for peer, seq in commit.acked.items():
                tx.run("DELETE FROM outbox WHERE peer = ? AND last_seq <= ?", (peer, seq))
                tx.run(
                    "UPDATE link_out SET acked = ? WHERE peer = ? AND acked < ?", (seq, peer, seq)
                )
            if commit.windows:
                tx.run_many(
                    "INSERT INTO link_in (peer, contiguous, above) VALUES (?, ?, ?)"
                    " ON CONFLICT (peer) DO UPDATE SET contiguous = excluded.contiguous,"
                    " above = excluded.above",
                    [(w.peer, w.contiguous, _pack(w.above)) for w in commit.windows.values()],
                )
            return position

        return write

    def save_snapshot_part(self, position: int, index: int, data: bytes) -> None:
        self._check_open()

        def write(tx: Executor) -> None:
            check_snapshot_position(position, _meta(tx, "last_position"))
            tx.run(
                "INSERT INTO snapshot_parts (position, part, data) VALUES (?, ?, ?)"
                " ON CONFLICT (position, part) DO UPDATE SET data = excluded.data",
                (position, index, bytes(data)),
            )

        self._transaction(write)

    def complete_snapshot(self, position: int, parts: int, checksum: int) -> None:
        self._check_open()

        def write(tx: Executor) -> None:
            check_snapshot_position(position, _meta(tx, "last_position"))
            found = tx.run(
                "SELECT COUNT(*) FROM snapshot_parts WHERE position = ? AND part < ?",
                (position, parts),
            )[0][0]
            if found != parts:
                raise StoreError(
                    "corrupt",
                    f"the snapshot after entry {position} has {found} of its {parts} parts",
                )
            tx.run("DELETE FROM snapshot_parts WHERE position = ? AND part >= ?", (position, parts))
            # An empty ``data`` says the snapshot is in parts (no snapshot is
            # empty); stores made before parts keep whole ones in ``data``.
            tx.run(
                "INSERT INTO snapshots (position, data, checksum) VALUES (?, ?, ?)"
                " ON CONFLICT (position) DO UPDATE SET data = excluded.data,"
                " checksum = excluded.checksum",
                (position, b"", checksum),
            )
            kept = tx.run(
                "SELECT position FROM snapshots ORDER BY position DESC LIMIT 1 OFFSET ?",
                (SNAPSHOTS_KEPT - 1,),
            )
            if kept:
                tx.run("DELETE FROM snapshots WHERE position < ?", (kept[0][0],))
            tx.run(
                "DELETE FROM snapshot_parts WHERE position NOT IN (SELECT position FROM snapshots)",
                (),
            )

        self._transaction(write)

    def position(self) -> int:
        self._check_open()
        return self._transaction(lambda tx: _meta(tx, "last_position"))

    def entries(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        self._check_open()
        check_limit(limit)
        rows = self._read(
            "SELECT position, entry, checksum FROM journal WHERE position > ?"
            " ORDER BY position LIMIT ?",
            (after, limit),
        )
        entries = verify_journal(after + 1, [(p, bytes(e), c) for p, e, c in rows])
        return [(after + 1 + i, data) for i, data in enumerate(entries)]

    # ------------------------------------------------------------ history

    def order(self, order_id: int) -> OrderRecord | None:
        self._check_open()
        rows = self._read(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE order_id = ?", (order_id,))
        return _order(rows[0]) if rows else None

    def order_by_client_id(self, trader_id: str, client_order_id: str) -> OrderRecord | None:
        self._check_open()
        rows = self._read(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE trader_id = ? AND client_order_id = ?",
            (trader_id, client_order_id),
        )
        return _order(rows[0]) if rows else None

    def client_order_ids(self, after_order_id: int, limit: int) -> list[tuple[int, str, str]]:
        self._check_open()
        check_limit(limit)
        rows = self._read(
            "SELECT order_id, trader_id, client_order_id FROM orders WHERE order_id > ?"
            " ORDER BY order_id LIMIT ?",
            (after_order_id, limit),
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def open_orders(self, after_order_id: int, limit: int) -> list[OrderRecord]:
        self._check_open()
        check_limit(limit)
        rows = self._read(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE is_open AND order_id > ?"
            " ORDER BY order_id LIMIT ?",
            (after_order_id, limit),
        )
        return [_order(row) for row in rows]

    def orders(
        self,
        trader_id: str,
        *,
        open_only: bool = False,
        product_id: str | None = None,
        page: Page = FIRST_PAGE,
    ) -> list[OrderRecord]:
        self._check_open()
        check_page(page)
        where, params = ["trader_id = ?"], [trader_id]
        if open_only:
            where.append("is_open")
        if product_id is not None:
            where.append("product_id = ?")
            params.append(product_id)
        if page.before is not None:
            where.append("order_id < ?")
            params.append(page.before)  # type: ignore[arg-type]
        rows = self._read(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {' AND '.join(where)}"
            " ORDER BY order_id DESC LIMIT ?",
            (*params, page.limit),
        )
        return [_order(row) for row in rows]

    def executions(
        self, trader_id: str, *, order_id: int | None = None, page: Page = FIRST_PAGE
    ) -> list[ExecutionRecord]:
        self._check_open()
        check_page(page)
        where: list[str] = ["trader_id = ?"]
        params: list[Any] = [trader_id]
        if order_id is not None:
            where.append("order_id = ?")
            params.append(order_id)
        if page.before is not None:
            where.append("seq < ?")
            params.append(page.before)
        rows = self._read(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?",
            (*params, page.limit),
        )
        return [ExecutionRecord(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]

    def ledger_entry(self, entry_id: str) -> LedgerRecord | None:
        self._check_open()
        rows = self._read(
            "SELECT entry_id, at_ms, body FROM ledger WHERE entry_id = ?", (entry_id,)
        )
        return LedgerRecord(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

    def evidence(self, peer: str, since_ms: int, until_ms: int) -> list[EvidenceRecord]:
        self._check_open()
        rows = self._read(
            "SELECT peer, at_ms, kind, frame FROM evidence WHERE peer = ? AND at_ms >= ?"
            " AND at_ms < ? ORDER BY seq",
            (peer, since_ms, until_ms),
        )
        return [EvidenceRecord(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    # ------------------------------------------------------------ links

    def links(self, outbox_limit: int | None = None) -> dict[str, LinkRecord]:
        self._check_open()
        check_limit(outbox_limit, "outbox_limit")

        def read(tx: Executor) -> dict[str, LinkRecord]:
            sent = {
                r[0]: (r[1], r[2]) for r in tx.run("SELECT peer, last_seq, acked FROM link_out", ())
            }
            counts = {
                r[0]: r[1] for r in tx.run("SELECT peer, COUNT(*) FROM outbox GROUP BY peer", ())
            }
            frames = {
                peer: _outbox_frames(peer, tx.run(*_outbox_query(peer, 0, outbox_limit)))
                for peer in sent
                if counts.get(peer)
            }
            windows = {
                r[0]: InboundWindow(r[0], r[1], _unpack(bytes(r[2])))
                for r in tx.run("SELECT peer, contiguous, above FROM link_in", ())
            }
            return {
                peer: LinkRecord(
                    peer,
                    sent.get(peer, (0, 0))[0],
                    sent.get(peer, (0, 0))[1],
                    tuple(frames.get(peer, ())),
                    windows.get(peer),
                    counts.get(peer, 0) - len(frames.get(peer, ())),
                )
                for peer in set(sent) | set(windows)
            }

        return self._transaction(read)

    def outbox(self, peer: str, after_seq: int, limit: int) -> list[OutboxFrame]:
        self._check_open()
        check_limit(limit)
        return _outbox_frames(peer, self._read(*_outbox_query(peer, after_seq, limit)))

    def put_peer_address(self, peer: str, address: str) -> None:
        self._check_open()
        self._transaction(
            lambda tx: tx.run(
                "INSERT INTO peer_addresses (peer, address) VALUES (?, ?)"
                " ON CONFLICT (peer) DO UPDATE SET address = excluded.address",
                (peer, address),
            )
        )

    def peer_addresses(self) -> dict[str, str]:
        self._check_open()
        return {
            str(r[0]): str(r[1]) for r in self._read("SELECT peer, address FROM peer_addresses")
        }

    # ------------------------------------------------------------ credentials

    def put_credential(self, credential: Credential) -> None:
        self._check_open()
        self._transaction(
            lambda tx: tx.run(
                "INSERT INTO credentials (key_id, trader_id, kind, material, created_ms, revoked)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    credential.key_id,
                    credential.trader_id,
                    credential.kind,
                    credential.material,
                    credential.created_ms,
                    credential.revoked,
                ),
            )
        )

    def credential(self, key_id: str) -> Credential | None:
        return self._credential_where("key_id = ?", key_id)

    def credential_with(self, material: bytes) -> Credential | None:
        return self._credential_where("material = ?", material)

    def _credential_where(self, condition: str, value: object) -> Credential | None:
        self._check_open()
        rows = self._read(
            "SELECT key_id, trader_id, kind, material, created_ms, revoked FROM credentials"
            f" WHERE {condition} LIMIT 1",
            (value,),
        )
        if not rows:
            return None
        r = rows[0]
        return Credential(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]))

    def revoke_credential(self, key_id: str) -> bool:
        self._check_open()
        changed = self._transaction(
            lambda tx: tx.run(
                "UPDATE credentials SET revoked = ? WHERE key_id = ? RETURNING key_id",
                (True, key_id),
            )
        )
        return bool(changed)

    def has_trader(self, trader_id: str) -> bool:
        self._check_open()
        rows = self._read("SELECT 1 FROM credentials WHERE trader_id = ? LIMIT 1", (trader_id,))
        return bool(rows)


def _meta(tx: Executor, key: str) -> int:
    rows = tx.run("SELECT value FROM datn_meta WHERE key = ?", (key,))
    if not rows:
        raise StoreError("corrupt", f"the store's {key} is missing from its metadata")
    value: int = rows[0][0]
    return value


def _order(row: Row) -> OrderRecord:
    return OrderRecord(
        row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7], bytes(row[8])
    )


def _outbox_query(peer: str, after_seq: int, limit: int | None) -> tuple[str, tuple[Any, ...]]:
    """The statement that reads :meth:`SqlStore.outbox`, and its parameters."""
    sql = (
        "SELECT first_seq, last_seq, frame FROM outbox WHERE peer = ? AND first_seq > ?"
        " ORDER BY first_seq"
    )
    if limit is None:
        return sql, (peer, after_seq)
    return sql + " LIMIT ?", (peer, after_seq, limit)


def _outbox_frames(peer: str, rows: list[Row]) -> list[OutboxFrame]:
    return [OutboxFrame(peer, first, last, bytes(frame)) for first, last, frame in rows]


def _write_outbox(tx: Executor, frames: list[OutboxFrame]) -> None:
    tx.run_many(
        "INSERT INTO outbox (peer, first_seq, last_seq, frame) VALUES (?, ?, ?, ?)",
        [(f.peer, f.first_seq, f.last_seq, f.frame) for f in frames],
    )
    last: dict[str, int] = {}
    for frame in frames:
        last[frame.peer] = max(last.get(frame.peer, 0), frame.last_seq)
    tx.run_many(
        "INSERT INTO link_out (peer, last_seq, acked) VALUES (?, ?, 0)"
        " ON CONFLICT (peer) DO UPDATE SET last_seq = excluded.last_seq",
        sorted(last.items()),
    )


def _pack(seqs: tuple[int, ...]) -> bytes:
    """Sequence numbers as 8-byte big-endian integers, one after another."""
    return b"".join(seq.to_bytes(8, "big") for seq in seqs)


def _unpack(data: bytes) -> tuple[int, ...]:
    if len(data) % 8:
        raise StoreError("corrupt", f"an inbound window of {len(data)} bytes is not whole numbers")
    return tuple(int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8))

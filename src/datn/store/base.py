"""The store's contract: what every backend keeps, and how it fails.

A node's store keeps three things:

* the **journal**: the node's inputs, encoded by :mod:`datn.wire.journal`,
  at positions 1, 2, 3, ... with no gap. Each entry is stored with a
  checksum over its position and its bytes, so a flipped byte, a swapped
  entry or a missing tail is found when the node starts, and named;
* **snapshots**: encoded by :mod:`datn.wire.snapshot`, each covering the
  journal up to a position; a restart loads the latest and replays the
  entries after it;
* the **history** traders and operators query: orders with their latest
  status, executions, ledger entries and the signed frames kept as evidence.
  History is derived from the journal (a node could rebuild it), so it is
  written in the same transaction as the entries that caused it and never
  read back by the core: the process keeps only live state in memory.

:meth:`Store.commit` is one transaction: the batch's entries and history
are durable together when it returns, or none of them are, so nothing an
acknowledgement depends on can be half-written. Backends are synchronous:
the runtime calls them from one writer thread, so a commit in flight never
stalls intake, and batches what arrives meanwhile into the next commit. A
backend whose commit is local and short (SQLite) also offers
:meth:`Store.commit_if_free`, which the runtime calls on its own thread for
a group of one input when nothing else is being written: the two thread
hand-offs would cost more than the commit.

Every failure is a :class:`StoreError` with a machine-readable ``code``:
``corrupt`` (what the store holds is not what was written: the message names
the position and what is wrong), ``full`` (the disk or the database refused
more data), ``unavailable`` (the database cannot be reached or the
connection broke), ``conflict`` (a position or id was written twice),
``misuse`` (a caller's bug, such as a commit after close) and ``bad_url``.
Driver exceptions never leave a backend.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Protocol

SCHEMA_VERSION: Final = 1
"""The layout of the store's tables; a store written by another version is
refused at open, naming both."""


class StoreError(Exception):
    """The store refused or failed; ``code`` says how, machine-readably."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def checksum(position: int, data: bytes) -> int:
    """CRC-32 over the position (8 bytes, big-endian) and the bytes: a
    changed byte, or an entry stored at another position, does not match."""
    return zlib.crc32(data, zlib.crc32(position.to_bytes(8, "big")))


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as traders query it: its latest status and fills.

    ``body`` is the full order as the API shows it, encoded by the caller;
    the other fields are what queries select on."""

    order_id: int
    trader_id: str
    client_order_id: str
    product_id: str
    status: str
    open: bool
    """Whether the order may still fill (resting, working, or partly locked)."""
    created_ms: int
    updated_ms: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One fill of one order (a trade has one per side at this node)."""

    execution_id: str
    order_id: int
    trader_id: str
    product_id: str
    at_ms: int
    body: bytes
    seq: int = 0
    """The store's count of it, set when read (1 for the first execution it
    stored): what ``Page.before`` takes to page on."""


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One ledger entry, as the operator audits it."""

    entry_id: str
    at_ms: int
    body: bytes


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """A signed frame kept as evidence: exactly the bytes the peer signed."""

    peer: str
    at_ms: int
    kind: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Credential:
    """How a trader (or the operator) proves who it is to the node's API:
    ``kind`` ``hmac`` keeps the shared secret, ``ed25519`` the public key."""

    key_id: str
    trader_id: str
    kind: str
    material: bytes
    created_ms: int
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class OutboxFrame:
    """A signed frame for ``peer``, kept until the peer acknowledges it:
    its envelopes carry the link's sequence numbers ``first_seq`` to
    ``last_seq``. A restarted node resends it as it was, byte for byte."""

    peer: str
    first_seq: int
    last_seq: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class InboundWindow:
    """Which sequence numbers this node has taken in from ``peer``: all up
    to ``contiguous``, and ``above`` it (see :class:`datn.wire.ReplayWindow`)."""

    peer: str
    contiguous: int
    above: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """One peer link as the store keeps it: the last sequence number used
    towards the peer (never used again), the highest the peer acknowledged,
    the frames it has not (oldest first), and what came in from it."""

    peer: str
    last_sent: int = 0
    acked: int = 0
    outbox: tuple[OutboxFrame, ...] = ()
    inbound: InboundWindow | None = None
    outbox_left: int = 0
    """Frames after ``outbox`` that the store holds and did not return
    (see the ``outbox_limit`` of :meth:`Store.links`)."""


@dataclass(slots=True)
class Commit:
    """What one transaction writes: journal entries (they take the next
    positions, in order), the history they caused, the frames they send to
    peers and the inbound windows of the frames they took in."""

    entries: list[bytes] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    """Inserted, or replacing the stored record of the same ``order_id``."""
    executions: list[ExecutionRecord] = field(default_factory=list)
    ledger: list[LedgerRecord] = field(default_factory=list)
    evidence: list[EvidenceRecord] = field(default_factory=list)
    outbox: list[OutboxFrame] = field(default_factory=list)
    """Frames for peers, in sequence order per peer: kept until acknowledged."""
    windows: dict[str, InboundWindow] = field(default_factory=dict)
    """Per peer, its inbound window after this commit's frames."""
    acked: dict[str, int] = field(default_factory=dict)
    """Per peer, the highest sequence number it acknowledged: the outbox
    frames up to it are dropped."""

    def __bool__(self) -> bool:
        return bool(
            self.entries
            or self.orders
            or self.executions
            or self.ledger
            or self.evidence
            or self.outbox
            or self.windows
            or self.acked
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """What a node starts from: the latest snapshot (None: none yet), the
    position it covers (0 without one), and every entry after it."""

    snapshot: bytes | None
    snapshot_position: int
    entries: list[bytes]

    @property
    def position(self) -> int:
        """The journal's last position: where the next commit starts after."""
        return self.snapshot_position + len(self.entries)


@dataclass(frozen=True, slots=True)
class Page:
    """Where a listing starts and how long it is: records older than
    ``before`` (a key the previous page ended at), newest first."""

    limit: int = 100
    before: int | None = None


FIRST_PAGE: Final = Page()
"""The newest 100 records."""


class JournalSource(Protocol):
    """A picklable address of a store that another process opens read-only
    (:meth:`Store.journal_source`)."""

    def open(self) -> Store:
        """The store, for reading (:meth:`Store.load`, :meth:`Store.entries`);
        a write raises a StoreError."""
        ...


class Store(ABC):
    """One node's journal, snapshots and history. See the module docstring."""

    # ------------------------------------------------------------ journal

    @abstractmethod
    def load(self) -> Stored:
        """The latest snapshot and the entries after it, every checksum and
        position verified. Raises ``corrupt`` naming the first bad position."""

    @abstractmethod
    def commit(self, commit: Commit) -> int:
        """Write ``commit`` in one durable transaction; the journal's last
        position after it. Nothing of it is stored if this raises."""

    def journal_source(self) -> JournalSource | None:
        """Where another process (the snapshot worker) can read this store's
        snapshots and journal for itself, without its lock and without
        writing; None if it cannot (this backend)."""
        return None

    def commit_if_free(self, commit: Commit) -> int | None:
        """As :meth:`commit`, on the calling thread, if no other write is in
        flight and the backend commits without a network round trip; None
        (nothing done) otherwise. This backend always answers None."""
        return None

    def save_snapshot(self, position: int, data: bytes) -> None:
        """Keep ``data`` as the snapshot of the state after ``position``.
        Durable when it returns; a later :meth:`load` starts from the
        latest one. (In one go: :meth:`snapshot_writes` lets other writes
        in between.)"""
        for write in self.snapshot_writes(position, data):
            write()

    def snapshot_writes(self, position: int, data: bytes) -> list[Callable[[], None]]:
        """The transactions that keep ``data`` as the snapshot after
        ``position``, to run in order: one :meth:`save_snapshot_part` per
        part, then :meth:`complete_snapshot`."""
        parts = snapshot_parts(data)
        writes: list[Callable[[], None]] = [
            partial(self.save_snapshot_part, position, index, part)
            for index, part in enumerate(parts)
        ]
        whole = checksum(position, data)
        writes.append(partial(self.complete_snapshot, position, len(parts), whole))
        return writes

    @abstractmethod
    def save_snapshot_part(self, position: int, index: int, data: bytes) -> None:
        """Keep ``data`` as part ``index`` (from 0) of the snapshot after
        ``position``, durably, in a transaction of its own. A part is never
        loaded until :meth:`complete_snapshot` completes its snapshot."""

    @abstractmethod
    def complete_snapshot(self, position: int, parts: int, checksum: int) -> None:
        """The snapshot after ``position`` is its parts 0 to ``parts - 1``,
        whose bytes joined have ``checksum`` (:func:`checksum`): from now on
        :meth:`load` starts from it. Parts of snapshots never completed are
        dropped (and older snapshots beyond the few a backend keeps). Raises
        ``corrupt``, keeping nothing, if the parts are not all there."""

    @abstractmethod
    def position(self) -> int:
        """The journal's last position (0 when empty)."""

    @abstractmethod
    def entries(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` journal entries after position ``after``, with
        their positions, checksums verified (for audits and replays)."""

    def size_bytes(self) -> int | None:
        """What the store takes on disk now, in bytes: its journal, snapshots,
        history, outbox and credentials, with their indexes and free space
        (a SQLite file and its write-ahead log; a PostgreSQL schema's tables).
        None where the store keeps nothing on disk (this backend). The
        journal is kept whole, as the node's record, so this grows with what
        the node takes in (README, *Running a node*)."""
        return None

    # ------------------------------------------------------------ history

    @abstractmethod
    def order(self, order_id: int) -> OrderRecord | None: ...

    @abstractmethod
    def order_by_client_id(self, trader_id: str, client_order_id: str) -> OrderRecord | None: ...

    @abstractmethod
    def client_order_ids(self, after_order_id: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` (order id, trader id, client order id) of every
        stored order with an id above ``after_order_id``, in id order: what a
        node pages through at start to know which client order ids were used."""

    @abstractmethod
    def open_orders(self, after_order_id: int, limit: int) -> list[OrderRecord]:
        """Up to ``limit`` orders of any trader that may still fill, with an
        id above ``after_order_id``, in id order (what a node pages through
        at start to schedule its good-till-date orders' expiries)."""

    @abstractmethod
    def orders(
        self,
        trader_id: str,
        *,
        open_only: bool = False,
        product_id: str | None = None,
        page: Page = FIRST_PAGE,
    ) -> list[OrderRecord]:
        """The trader's orders, newest (highest ``order_id``) first."""

    @abstractmethod
    def executions(
        self, trader_id: str, *, order_id: int | None = None, page: Page = FIRST_PAGE
    ) -> list[ExecutionRecord]:
        """The trader's executions, newest first (``page.before`` is a
        position in the order they were stored)."""

    @abstractmethod
    def ledger_entry(self, entry_id: str) -> LedgerRecord | None: ...

    @abstractmethod
    def evidence(self, peer: str, since_ms: int, until_ms: int) -> list[EvidenceRecord]:
        """Frames kept from ``peer`` with ``since_ms <= at_ms < until_ms``,
        oldest first."""

    # ------------------------------------------------------------ credentials

    # ------------------------------------------------------------ links

    @abstractmethod
    def links(self, outbox_limit: int | None = None) -> dict[str, LinkRecord]:
        """Every peer link the store knows, by peer: what a restarted node
        resumes its links from. Each link's outbox holds its oldest
        ``outbox_limit`` frames (all of them if None); how many more the
        store holds is its ``outbox_left``."""

    @abstractmethod
    def outbox(self, peer: str, after_seq: int, limit: int) -> list[OutboxFrame]:
        """The outbox frames to ``peer`` that begin after ``after_seq``,
        oldest first, at most ``limit`` of them."""

    @abstractmethod
    def put_peer_address(self, peer: str, address: str) -> None:
        """Keep where ``peer`` listens for links (replacing what was kept)."""

    @abstractmethod
    def peer_addresses(self) -> dict[str, str]:
        """Where each peer listens, as kept by :meth:`put_peer_address`."""

    # ------------------------------------------------------------ credentials

    @abstractmethod
    def put_credential(self, credential: Credential) -> None:
        """Keep a new credential, durably; ``conflict`` if its key id exists."""

    @abstractmethod
    def credential(self, key_id: str) -> Credential | None: ...

    @abstractmethod
    def credential_with(self, material: bytes) -> Credential | None:
        """A credential, revoked or not, whose key material is ``material``
        (an Ed25519 public key registered already), if any."""

    @abstractmethod
    def revoke_credential(self, key_id: str) -> bool:
        """Mark it revoked; False if there is no such key."""

    @abstractmethod
    def has_trader(self, trader_id: str) -> bool:
        """Whether ``trader_id`` was ever given a key (revoked since or not):
        the traders an operator created."""

    # ------------------------------------------------------------ life

    @abstractmethod
    def close(self) -> None:
        """Release the files or connections; later calls raise ``misuse``."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SNAPSHOT_PART_BYTES: Final = 256 * 1024
"""Snapshots are written in parts of this size, each in a transaction of
its own: a commit waits for one part (a millisecond or two), never for a
whole snapshot of many megabytes."""


def snapshot_parts(data: bytes) -> list[bytes]:
    """``data`` cut into parts of :data:`SNAPSHOT_PART_BYTES`."""
    return [data[i : i + SNAPSHOT_PART_BYTES] for i in range(0, len(data), SNAPSHOT_PART_BYTES)]


def check_snapshot(position: int, parts: Sequence[bytes], stored: int) -> bytes:
    """The snapshot after ``position`` joined from ``parts``, if it matches
    checksum ``stored``; else ``corrupt``, naming the snapshot."""
    data = b"".join(parts)
    if checksum(position, data) != stored:
        raise StoreError(
            "corrupt",
            f"the snapshot after entry {position} does not match its checksum "
            f"(its bytes changed or went missing after they were written; "
            f"{len(parts)} part(s) found)",
        )
    return data


def verify_journal(first: int, rows: Sequence[tuple[int, bytes, int]]) -> list[bytes]:
    """The entries of ``rows`` (position, bytes, stored checksum), which must
    run from ``first`` without a gap and match their checksums."""
    entries: list[bytes] = []
    expected = first
    for position, data, stored in rows:
        if position != expected:
            raise StoreError(
                "corrupt",
                f"journal entry {expected} is missing (the next stored entry is {position})",
            )
        actual = checksum(position, data)
        if actual != stored:
            raise StoreError(
                "corrupt",
                f"journal entry {position} does not match its checksum "
                f"(stored {stored:#010x}, computed {actual:#010x}): its bytes changed "
                "after they were written",
            )
        entries.append(data)
        expected += 1
    return entries


def check_tail(last_written: int, last_found: int) -> None:
    """The journal must end where its last commit said it did."""
    if last_found < last_written:
        raise StoreError(
            "corrupt",
            f"the journal ends at entry {last_found}, but entries up to {last_written} "
            f"were committed: entries {last_found + 1} to {last_written} are missing "
            "(a truncated tail)",
        )
    if last_found > last_written:
        raise StoreError(
            "corrupt",
            f"the journal holds entries up to {last_found}, but its last commit ended "
            f"at {last_written}",
        )


def check_limit(limit: int | None, what: str = "limit") -> None:
    """A read's ``limit`` (None: no limit where the method allows it) must
    not be negative: each backend would read a negative one differently
    (SQLite as no limit, PostgreSQL as an error, a slice from the end)."""
    if limit is not None and limit < 0:
        raise StoreError("misuse", f"{what} is 0 or more, not {limit}")


def check_page(page: Page) -> None:
    if not 1 <= page.limit <= 1_000:
        raise StoreError("misuse", f"a page holds 1 to 1,000 records, not {page.limit}")


def check_snapshot_position(position: int, last: int) -> None:
    if not 0 < position <= last:
        raise StoreError(
            "misuse",
            f"a snapshot after position {position} cannot be kept: the journal "
            f"runs from 1 to {last}",
        )

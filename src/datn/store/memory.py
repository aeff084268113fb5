"""A store in memory, for tests: the contract of :mod:`datn.store.base`,
nothing durable. Its rows are kept as a database keeps them (bytes and
checksums), so tests can damage them as a disk would."""

from __future__ import annotations

from dataclasses import replace

from datn.store.base import (
    FIRST_PAGE,
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


class MemoryStore(Store):
    def __init__(self) -> None:
        self.journal: dict[int, tuple[bytes, int]] = {}
        """position -> (entry, checksum): what a journal table holds."""
        self.last_committed = 0
        self.snapshots: dict[int, tuple[bytes, int]] = {}
        self._parts: dict[int, dict[int, bytes]] = {}
        """position -> index -> bytes: parts of snapshots not completed."""
        self._orders: dict[int, OrderRecord] = {}
        self._by_client: dict[tuple[str, str], int] = {}
        self._executions: list[ExecutionRecord] = []
        self._execution_ids: set[str] = set()
        self._ledger: dict[str, LedgerRecord] = {}
        self._evidence: list[EvidenceRecord] = []
        self._credentials: dict[str, Credential] = {}
        self._outbox: dict[str, dict[int, OutboxFrame]] = {}
        """peer -> first_seq -> frame, unacknowledged."""
        self._sent: dict[str, tuple[int, int]] = {}
        """peer -> (last sequence number used, highest acknowledged)."""
        self._windows: dict[str, InboundWindow] = {}
        self._addresses: dict[str, str] = {}
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise StoreError("misuse", "the store is closed")

    # ------------------------------------------------------------ journal

    def load(self) -> Stored:
        self._open()
        snapshot: bytes | None = None
        start = 0
        if self.snapshots:
            start = max(self.snapshots)
            data, stored = self.snapshots[start]
            snapshot = check_snapshot(start, [data], stored)
        rows = sorted((p, d, c) for p, (d, c) in self.journal.items() if p > start)
        entries = verify_journal(start + 1, rows)
        check_tail(self.last_committed, max(self.journal, default=0))
        return Stored(snapshot, start, entries)

    def commit(self, commit: Commit) -> int:
        self._open()
        for record in commit.executions:
            if record.execution_id in self._execution_ids:
                raise StoreError("conflict", f"execution {record.execution_id} is stored already")
        for order in commit.orders:
            stored = self._orders.get(order.order_id)
            if stored is not None and (stored.trader_id, stored.client_order_id) != (
                order.trader_id,
                order.client_order_id,
            ):
                raise StoreError(
                    "conflict",
                    f"order {order.order_id} is stored for another trader or client order id",
                )
            owner = self._by_client.get((order.trader_id, order.client_order_id))
            if owner is not None and owner != order.order_id:
                raise StoreError(
                    "conflict",
                    f"client order id {order.client_order_id!r} of {order.trader_id} "
                    f"belongs to order {owner}",
                )
        for frame in commit.outbox:
            if frame.first_seq in self._outbox.get(frame.peer, {}):
                raise StoreError("conflict", f"frame {frame.first_seq} to {frame.peer} is kept")
        position = self.last_committed
        for data in commit.entries:
            position += 1
            self.journal[position] = (bytes(data), checksum(position, data))
        self.last_committed = position
        for order in commit.orders:
            self._orders[order.order_id] = order
            self._by_client[(order.trader_id, order.client_order_id)] = order.order_id
        for record in commit.executions:
            self._executions.append(record)
            self._execution_ids.add(record.execution_id)
        for entry in commit.ledger:
            self._ledger[entry.entry_id] = entry
        self._evidence.extend(commit.evidence)
        for frame in commit.outbox:
            frames = self._outbox.setdefault(frame.peer, {})
            frames[frame.first_seq] = frame
            acked = self._sent.get(frame.peer, (0, 0))[1]
            self._sent[frame.peer] = (frame.last_seq, acked)
        for peer, seq in commit.acked.items():
            last, acked = self._sent.get(peer, (0, 0))
            if seq > acked:
                self._sent[peer] = (last, seq)
            frames = self._outbox.get(peer, {})
            for first in [f for f, frame in frames.items() if frame.last_seq <= seq]:
                del frames[first]
        self._windows.update(commit.windows)
        return position

    def save_snapshot_part(self, position: int, index: int, data: bytes) -> None:
        self._open()
        check_snapshot_position(position, self.last_committed)
        self._parts.setdefault(position, {})[index] = bytes(data)

    def complete_snapshot(self, position: int, parts: int, checksum: int) -> None:
        self._open()
        check_snapshot_position(position, self.last_committed)
        kept = self._parts.get(position, {})
        found = sum(1 for index in kept if index < parts)
        if found != parts:
            raise StoreError(
                "corrupt", f"the snapshot after entry {position} has {found} of its {parts} parts"
            )
        self.snapshots[position] = (b"".join(kept[i] for i in range(parts)), checksum)
        self._parts.clear()

    def position(self) -> int:
        self._open()
        return self.last_committed

    def entries(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        self._open()
        check_limit(limit)
        rows = [
            (p, *self.journal[p]) for p in range(after + 1, after + 1 + limit) if p in self.journal
        ]
        entries = verify_journal(after + 1, rows)
        return [(after + 1 + i, data) for i, data in enumerate(entries)]

    # ------------------------------------------------------------ history

    def order(self, order_id: int) -> OrderRecord | None:
        self._open()
        return self._orders.get(order_id)

    def order_by_client_id(self, trader_id: str, client_order_id: str) -> OrderRecord | None:
        self._open()
        order_id = self._by_client.get((trader_id, client_order_id))
        return None if order_id is None else self._orders[order_id]

    def client_order_ids(self, after_order_id: int, limit: int) -> list[tuple[int, str, str]]:
        self._open()
        check_limit(limit)
        found = sorted(i for i in self._orders if i > after_order_id)[:limit]
        return [(i, self._orders[i].trader_id, self._orders[i].client_order_id) for i in found]

    def open_orders(self, after_order_id: int, limit: int) -> list[OrderRecord]:
        self._open()
        check_limit(limit)
        found = sorted(i for i, o in self._orders.items() if o.open and i > after_order_id)
        return [self._orders[i] for i in found[:limit]]

    def orders(
        self,
        trader_id: str,
        *,
        open_only: bool = False,
        product_id: str | None = None,
        page: Page = FIRST_PAGE,
    ) -> list[OrderRecord]:
        self._open()
        check_page(page)
        found = [
            o
            for o in self._orders.values()
            if o.trader_id == trader_id
            and (not open_only or o.open)
            and (product_id is None or o.product_id == product_id)
            and (page.before is None or o.order_id < page.before)
        ]
        found.sort(key=lambda o: o.order_id, reverse=True)
        return found[: page.limit]

    def executions(
        self, trader_id: str, *, order_id: int | None = None, page: Page = FIRST_PAGE
    ) -> list[ExecutionRecord]:
        self._open()
        check_page(page)
        found: list[ExecutionRecord] = []
        end = len(self._executions)
        if page.before is not None:
            end = min(page.before - 1, end)
        for index in range(end - 1, -1, -1):
            record = self._executions[index]
            if record.trader_id == trader_id and (order_id is None or record.order_id == order_id):
                found.append(replace(record, seq=index + 1))
                if len(found) == page.limit:
                    break
        return found

    def ledger_entry(self, entry_id: str) -> LedgerRecord | None:
        self._open()
        return self._ledger.get(entry_id)

    def evidence(self, peer: str, since_ms: int, until_ms: int) -> list[EvidenceRecord]:
        self._open()
        return [e for e in self._evidence if e.peer == peer and since_ms <= e.at_ms < until_ms]

    def links(self, outbox_limit: int | None = None) -> dict[str, LinkRecord]:
        self._open()
        check_limit(outbox_limit, "outbox_limit")
        peers = set(self._sent) | set(self._windows)
        records = {}
        for peer in peers:
            frames = [frame for _, frame in sorted(self._outbox.get(peer, {}).items())]
            kept = frames if outbox_limit is None else frames[:outbox_limit]
            records[peer] = LinkRecord(
                peer,
                self._sent.get(peer, (0, 0))[0],
                self._sent.get(peer, (0, 0))[1],
                tuple(kept),
                self._windows.get(peer),
                len(frames) - len(kept),
            )
        return records

    def outbox(self, peer: str, after_seq: int, limit: int) -> list[OutboxFrame]:
        self._open()
        check_limit(limit)
        frames = self._outbox.get(peer, {})
        return [frames[first] for first in sorted(f for f in frames if f > after_seq)][:limit]

    def put_peer_address(self, peer: str, address: str) -> None:
        self._open()
        self._addresses[peer] = address

    def peer_addresses(self) -> dict[str, str]:
        self._open()
        return dict(self._addresses)

    def put_credential(self, credential: Credential) -> None:
        self._open()
        if credential.key_id in self._credentials:
            raise StoreError("conflict", f"key {credential.key_id} exists already")
        self._credentials[credential.key_id] = credential

    def credential(self, key_id: str) -> Credential | None:
        self._open()
        return self._credentials.get(key_id)

    def credential_with(self, material: bytes) -> Credential | None:
        self._open()
        return next((c for c in self._credentials.values() if c.material == material), None)

    def revoke_credential(self, key_id: str) -> bool:
        self._open()
        found = self._credentials.get(key_id)
        if found is None:
            return False
        self._credentials[key_id] = replace(found, revoked=True)
        return True

    def has_trader(self, trader_id: str) -> bool:
        self._open()
        return any(c.trader_id == trader_id for c in self._credentials.values())

    def close(self) -> None:
        self._closed = True

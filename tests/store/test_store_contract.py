"""The store contract (datn.store.base), on every backend: what is committed
is what a restart loads, exactly; damage is refused and named; a failed
commit leaves nothing behind; history answers the queries traders make."""

from __future__ import annotations

import random

import pytest
from backends import Backend

from datn.sim.network import Faults, Simulation
from datn.store import (
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
    StoreError,
)
from datn.store.base import checksum, snapshot_parts
from datn.wire import encode_entry, encode_snapshot, recover_node


def entries(first: int, count: int) -> list[bytes]:
    return [f"entry {n}".encode() * (n % 5 + 1) for n in range(first, first + count)]


def order(
    order_id: int, *, trader: str = "alice", client: str | None = None, **kw: object
) -> OrderRecord:
    fields: dict[str, object] = {
        "order_id": order_id,
        "trader_id": trader,
        "client_order_id": client or f"c{order_id}",
        "product_id": "xyz",
        "status": "new",
        "open": True,
        "created_ms": 1_000 + order_id,
        "updated_ms": 1_000 + order_id,
        "body": b"order %d" % order_id,
    }
    fields.update(kw)
    return OrderRecord(**fields)  # type: ignore[arg-type]


def refusal(action: object) -> StoreError:
    with pytest.raises(StoreError) as caught:
        action()  # type: ignore[operator]
    return caught.value


# ---------------------------------------------------------------- journal


def test_an_empty_store_loads_as_nothing(backend: Backend) -> None:
    with backend.open() as store:
        stored = store.load()
        assert (stored.snapshot, stored.snapshot_position, stored.entries) == (None, 0, [])
        assert store.position() == 0


def test_committed_entries_load_back_exactly_after_a_reopen(backend: Backend) -> None:
    written = entries(1, 7)
    with backend.open() as store:
        assert store.commit(Commit(entries=written[:3])) == 3
        assert store.commit(Commit(entries=written[3:])) == 7
    with backend.open() as store:
        stored = store.load()
        assert stored.entries == written and stored.position == 7
        assert store.entries(2, 3) == [(3, written[2]), (4, written[3]), (5, written[4])]
        assert store.commit(Commit(entries=[b"next"])) == 8


def test_a_commit_on_the_calling_thread_is_a_commit_or_nothing(backend: Backend) -> None:
    written = entries(1, 4)
    with backend.open() as store:
        store.commit(Commit(entries=written[:2], orders=[order(1)]))
        position = store.commit_if_free(Commit(entries=written[2:], orders=[order(2)]))
        if position is None:  # this backend always leaves it to the writer thread
            assert store.position() == 2 and store.order(2) is None
            store.commit(Commit(entries=written[2:], orders=[order(2)]))
        else:
            assert position == 4
        assert store.commit_if_free(Commit()) is None  # nothing to write: nothing done
    with backend.open() as store:
        assert store.load().entries == written
        assert store.order(2) == order(2)


def test_the_store_says_what_it_takes_on_disk(backend: Backend) -> None:
    with backend.open() as store:
        if backend.name == "memory":
            assert store.size_bytes() is None
            return
        empty = store.size_bytes()
        assert empty is not None and empty > 0
        # 1 MiB of entries that no compression shrinks.
        store.commit(Commit(entries=[random.randbytes(2_048) for _ in range(512)]))
        grown = store.size_bytes()
        assert grown is not None and grown >= empty + 2**20
    with backend.open() as store:
        assert store.size_bytes() == pytest.approx(grown, rel=0.25)


def test_a_snapshot_loads_with_only_the_entries_after_it(backend: Backend) -> None:
    written = entries(1, 10)
    with backend.open() as store:
        store.commit(Commit(entries=written[:6]))
        store.save_snapshot(4, b"state after 4")
        store.commit(Commit(entries=written[6:]))
        store.save_snapshot(6, b"state after 6")
    with backend.open() as store:
        stored = store.load()
        assert stored.snapshot == b"state after 6" and stored.snapshot_position == 6
        assert stored.entries == written[6:] and stored.position == 10
        # The journal stays whole for audits and replays.
        assert [data for _, data in store.entries(0, 100)] == written


def test_a_snapshot_is_written_in_parts_and_loads_only_once_complete(backend: Backend) -> None:
    # Parts go in transactions of their own, so that commits wait for one
    # part at most; until its snapshot is complete, no part is loaded.
    first = bytes(range(256)) * 2_500  # three parts
    second = first[::-1]
    parts = snapshot_parts(second)
    assert len(parts) == 3
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 6)))
        store.save_snapshot(3, first)
        store.save_snapshot_part(5, 0, parts[0])
        store.save_snapshot_part(5, 1, parts[1])
        assert (store.load().snapshot_position, store.load().snapshot) == (3, first)
        missing = refusal(lambda: store.complete_snapshot(5, 3, checksum(5, second)))
        assert missing.code == "corrupt" and "after entry 5 has 2 of its 3 parts" in missing.message
        assert store.load().snapshot_position == 3
        store.save_snapshot_part(5, 2, parts[2])
        store.complete_snapshot(5, 3, checksum(5, second))
    with backend.open() as store:
        stored = store.load()
        assert (stored.snapshot_position, stored.snapshot) == (5, second)
        assert stored.entries == entries(6, 1)


def test_a_lost_part_of_a_snapshot_is_refused_at_start_naming_it(backend: Backend) -> None:
    data = bytes(range(256)) * 2_500
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 6)))
        store.save_snapshot(5, data)
    backend.lose_snapshot_part(5, 1)
    with backend.open() as store:
        error = refusal(store.load)
    assert error.code == "corrupt" and "snapshot after entry 5" in error.message


def test_a_snapshot_beyond_the_journal_is_refused(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 2)))
        assert refusal(lambda: store.save_snapshot(3, b"x")).code == "misuse"
        assert refusal(lambda: store.save_snapshot(0, b"x")).code == "misuse"
        assert store.load().snapshot is None


def test_a_flipped_byte_is_refused_at_start_naming_the_entry(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 5)))
    backend.flip_byte(3)
    with backend.open() as store:
        error = refusal(store.load)
    assert error.code == "corrupt"
    assert "journal entry 3 does not match its checksum" in error.message


def test_a_truncated_tail_is_refused_at_start_naming_what_is_missing(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 5)))
        store.commit(Commit(entries=entries(6, 3)))
    backend.truncate(keep=6)
    with backend.open() as store:
        error = refusal(store.load)
    assert error.code == "corrupt"
    assert "entries 7 to 8 are missing" in error.message


def test_a_missing_entry_in_the_middle_is_refused(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 5)))
    if backend.name == "memory":
        del backend.store.journal[2]  # type: ignore[attr-defined]
    else:
        backend.run_raw("DELETE FROM journal WHERE position = ?", 2)
    with backend.open() as store:
        error = refusal(store.load)
    assert error.code == "corrupt" and "journal entry 2 is missing" in error.message


def test_an_entry_moved_to_another_position_does_not_match(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("the memory store's rows are Python objects; the SQL backends show this")
    with backend.open() as store:
        store.commit(Commit(entries=[b"first", b"second"]))
    backend.run_raw("UPDATE journal SET entry = ? WHERE position = 2", b"first")
    with backend.open() as store:
        assert "journal entry 2 does not match" in refusal(store.load).message


# ---------------------------------------------------------------- history


def test_orders_are_found_by_id_and_by_client_id_with_their_latest_status(
    backend: Backend,
) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=[b"place"], orders=[order(1)]))
        done = order(1, status="filled", open=False, updated_ms=5_000, body=b"filled")
        store.commit(Commit(entries=[b"fill"], orders=[done]))
    with backend.open() as store:
        assert store.order(1) == done
        assert store.order_by_client_id("alice", "c1") == done
        assert store.order(2) is None and store.order_by_client_id("bob", "c1") is None


def test_a_client_order_id_belongs_to_one_order_and_the_commit_changes_nothing(
    backend: Backend,
) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=[b"one"], orders=[order(1, client="same")]))
        error = refusal(
            lambda: store.commit(Commit(entries=[b"two"], orders=[order(2, client="same")]))
        )
        assert error.code == "conflict"
        assert store.position() == 1 and store.order(2) is None
        assert store.load().entries == [b"one"]
        # Another trader may use the same client order id.
        store.commit(Commit(entries=[b"three"], orders=[order(3, trader="bob", client="same")]))
        assert store.position() == 2


def test_every_used_client_order_id_is_paged_in_order_id_order(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(orders=[order(n, client=f"c{n}") for n in (5, 1, 9, 3)]))
        store.commit(Commit(orders=[order(7, trader="bob", client="c1")]))
        store.commit(Commit(orders=[order(5, client="c5", status="filled", open=False)]))
        rejected = -(2**62) - 1  # rejected orders are kept under negative ids
        store.commit(Commit(orders=[order(rejected, client="no", status="rejected", open=False)]))
        first = store.client_order_ids(-(2**63), 3)
        rest = store.client_order_ids(first[-1][0], 10)
        assert store.client_order_ids(9, 10) == []
    assert first + rest == [
        (rejected, "alice", "no"),
        (1, "alice", "c1"),
        (3, "alice", "c3"),
        (5, "alice", "c5"),
        (7, "bob", "c1"),
        (9, "alice", "c9"),
    ]
    assert len(first) == 3


def test_open_orders_of_every_trader_are_paged_in_order_id_order(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(orders=[order(n, open=n % 2 == 1) for n in range(1, 8)]))
        store.commit(Commit(orders=[order(9, trader="bob")]))
        store.commit(Commit(orders=[order(3, status="filled", open=False)]))
        first = store.open_orders(-(2**63), 2)
        rest = store.open_orders(first[-1].order_id, 10)
    assert [(o.order_id, o.trader_id) for o in first + rest] == [
        (1, "alice"),
        (5, "alice"),
        (7, "alice"),
        (9, "bob"),
    ]


def test_an_order_cannot_change_trader(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(orders=[order(1)]))
        error = refusal(lambda: store.commit(Commit(orders=[order(1, trader="mallory")])))
        assert error.code == "conflict" and store.order(1) == order(1)


def test_a_group_with_one_order_of_another_trader_writes_nothing(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(Commit(orders=[order(1)]))
        before = store.position()
        group = Commit(entries=[b"e"], orders=[order(2), order(1, trader="mallory"), order(3)])
        error = refusal(lambda: store.commit(group))
        assert error.code == "conflict" and "order 1 " in error.message
        assert store.order(1) == order(1)
        assert store.order(2) is None and store.order(3) is None
        assert store.position() == before


def test_orders_list_newest_first_filtered_and_paged(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(
            Commit(
                orders=[
                    order(n, open=n % 2 == 0, product_id="xyz" if n < 8 else "abc")
                    for n in range(1, 11)
                ]
                + [order(11, trader="bob")]
            )
        )
        ids = [o.order_id for o in store.orders("alice")]
        assert ids == list(range(10, 0, -1))
        assert [o.order_id for o in store.orders("alice", open_only=True)] == [10, 8, 6, 4, 2]
        assert [o.order_id for o in store.orders("alice", product_id="abc")] == [10, 9, 8]
        first = store.orders("alice", page=Page(limit=4))
        second = store.orders("alice", page=Page(limit=4, before=first[-1].order_id))
        assert [o.order_id for o in first + second] == [10, 9, 8, 7, 6, 5, 4, 3]
        assert refusal(lambda: store.orders("alice", page=Page(limit=0))).code == "misuse"


def test_executions_list_newest_first_and_page_on_their_sequence(backend: Backend) -> None:
    with backend.open() as store:
        for n in range(1, 6):
            execution = ExecutionRecord(f"e{n}", n % 2, "alice", "xyz", 100 * n, b"fill %d" % n)
            store.commit(Commit(entries=[b"trade"], executions=[execution]))
        found = store.executions("alice")
        assert [e.execution_id for e in found] == ["e5", "e4", "e3", "e2", "e1"]
        assert [e.seq for e in found] == [5, 4, 3, 2, 1]
        page = store.executions("alice", page=Page(limit=2, before=found[1].seq))
        assert [e.execution_id for e in page] == ["e3", "e2"]
        assert [e.execution_id for e in store.executions("alice", order_id=0)] == ["e4", "e2"]
        assert store.executions("bob") == []
        again = ExecutionRecord("e1", 1, "alice", "xyz", 1, b"again")
        assert refusal(lambda: store.commit(Commit(executions=[again]))).code == "conflict"


def test_ledger_entries_and_evidence_are_kept(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(
            Commit(
                entries=[b"x"],
                ledger=[LedgerRecord("trade:1", 10, b"postings")],
                evidence=[
                    EvidenceRecord("peer-b", 10, "confirmation", b"signed frame 1"),
                    EvidenceRecord("peer-c", 20, "statement", b"signed frame 2"),
                    EvidenceRecord("peer-b", 30, "refusal", b"signed frame 3"),
                ],
            )
        )
    with backend.open() as store:
        assert store.ledger_entry("trade:1") == LedgerRecord("trade:1", 10, b"postings")
        assert store.ledger_entry("trade:2") is None
        frames = store.evidence("peer-b", 0, 100)
        assert [f.frame for f in frames] == [b"signed frame 1", b"signed frame 3"]
        assert store.evidence("peer-b", 11, 30) == []


# ---------------------------------------------------------------- links


def test_outbox_frames_stay_until_acknowledged_and_sequence_numbers_are_never_reused(
    backend: Backend,
) -> None:
    with backend.open() as store:
        store.commit(
            Commit(
                entries=[b"x"],
                outbox=[
                    OutboxFrame("peer-b", 1, 3, b"frame 1-3"),
                    OutboxFrame("peer-c", 1, 1, b"frame c1"),
                    OutboxFrame("peer-b", 4, 4, b"frame 4"),
                ],
            )
        )
        store.commit(Commit(acked={"peer-b": 3}))
    with backend.open() as store:
        links = store.links()
        assert links["peer-b"] == LinkRecord(
            "peer-b", last_sent=4, acked=3, outbox=(OutboxFrame("peer-b", 4, 4, b"frame 4"),)
        )
        assert links["peer-c"].outbox == (OutboxFrame("peer-c", 1, 1, b"frame c1"),)
        store.commit(Commit(acked={"peer-b": 4, "peer-c": 1}))
        # Every frame acknowledged: the last number used is still kept.
        assert store.links()["peer-b"] == LinkRecord("peer-b", last_sent=4, acked=4)
        # An older acknowledgement moves nothing back.
        store.commit(Commit(acked={"peer-b": 2}))
        assert store.links()["peer-b"].acked == 4


def test_an_outbox_is_read_a_page_at_a_time(backend: Backend) -> None:
    frames = [OutboxFrame("peer-b", n, n + 1, b"frame %d" % n) for n in range(1, 20, 2)]
    with backend.open() as store:
        store.commit(
            Commit(entries=[b"x"], outbox=[*frames, OutboxFrame("peer-c", 1, 1, b"frame c1")])
        )
        store.commit(Commit(acked={"peer-b": 4}))
    with backend.open() as store:
        # A node resumes its links with a bounded part of each outbox, and
        # knows how many frames it left in the store.
        links = store.links(outbox_limit=3)
        assert links["peer-b"].outbox == tuple(frames[2:5])
        assert links["peer-b"].outbox_left == 5
        assert links["peer-c"].outbox == (OutboxFrame("peer-c", 1, 1, b"frame c1"),)
        assert links["peer-c"].outbox_left == 0
        assert store.links()["peer-b"].outbox == tuple(frames[2:])
        # The rest, a page at a time, after the last frame it holds.
        assert store.outbox("peer-b", 9, 2) == frames[5:7]
        assert store.outbox("peer-b", 14, 100) == frames[7:]
        assert store.outbox("peer-b", 19, 100) == []
        assert store.outbox("peer-x", 0, 100) == []


def test_a_negative_limit_is_a_misuse_on_every_backend(backend: Backend) -> None:
    # SQLite reads LIMIT -1 as no limit, PostgreSQL refuses it, a list
    # slices from its end: the store refuses it the same way everywhere.
    frames = [OutboxFrame("peer-b", n, n, b"frame %d" % n) for n in range(1, 4)]
    with backend.open() as store:
        store.commit(Commit(entries=entries(1, 3), orders=[order(1)], outbox=frames))
        for read in (
            lambda: store.links(outbox_limit=-1),
            lambda: store.outbox("peer-b", 0, -1),
            lambda: store.entries(0, -1),
            lambda: store.client_order_ids(0, -1),
            lambda: store.open_orders(0, -1),
        ):
            assert refusal(read).code == "misuse"
        assert store.links(outbox_limit=0)["peer-b"].outbox_left == 3
        assert store.outbox("peer-b", 0, 0) == []


def test_a_frame_kept_twice_under_one_number_is_refused_and_the_commit_leaves_nothing(
    backend: Backend,
) -> None:
    with backend.open() as store:
        store.commit(Commit(entries=[b"x"], outbox=[OutboxFrame("peer-b", 1, 1, b"one")]))
        error = refusal(
            lambda: store.commit(
                Commit(entries=[b"y"], outbox=[OutboxFrame("peer-b", 1, 2, b"again")])
            )
        )
        assert error.code == "conflict"
        assert store.position() == 1
        assert store.links()["peer-b"].outbox == (OutboxFrame("peer-b", 1, 1, b"one"),)


def test_inbound_windows_and_peer_addresses_are_kept(backend: Backend) -> None:
    with backend.open() as store:
        store.commit(
            Commit(entries=[b"x"], windows={"peer-b": InboundWindow("peer-b", 7, (9, 12))})
        )
        store.commit(Commit(windows={"peer-b": InboundWindow("peer-b", 12)}))
        store.put_peer_address("peer-b", "ws://127.0.0.1:9001")
        store.put_peer_address("peer-b", "ws://127.0.0.1:9002")
    with backend.open() as store:
        assert store.links()["peer-b"].inbound == InboundWindow("peer-b", 12, ())
        assert store.links()["peer-b"].last_sent == 0
        assert store.peer_addresses() == {"peer-b": "ws://127.0.0.1:9002"}


# ---------------------------------------------------------------- life


def test_a_closed_store_refuses_every_call(backend: Backend) -> None:
    store = backend.open()
    store.close()
    store.close()  # closing twice is harmless
    for call in (store.load, store.position, lambda: store.commit(Commit(entries=[b"x"]))):
        assert refusal(call).code == "misuse"


def test_one_process_owns_a_store(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("a memory store belongs to its process")
    with backend.open():
        error = refusal(backend.open)
        assert error.code == "locked" and "in use by another process" in error.message
    with backend.open() as store:  # released on close
        assert store.position() == 0


def test_a_node_rebuilds_from_what_its_store_loads(backend: Backend) -> None:
    """Real journal entries and a real snapshot: the node a restart builds
    from the store has the state of the node that wrote them."""
    sim = Simulation(5, 3, faults=Faults.none())
    sim.fund()
    end_ms = sim.schedule_flow(40, 2_000)
    sim.run(until_ms=1_000)
    node_id = next(iter(sim.nodes))
    node = sim.nodes[node_id]
    assert node.snapshot is None, "the run is short enough to keep every entry"
    with backend.open() as store:
        written = [encode_entry(entry) for entry in node.journal]
        half = len(written) // 2
        store.commit(Commit(entries=written[:half]))
        store.commit(Commit(entries=written[half:]))
        store.save_snapshot(len(written), encode_snapshot(node.core.snapshot()))
        later_start = len(node.journal)
        sim.run(until_ms=end_ms + 1_000)
        later = [encode_entry(entry) for entry in node.journal[later_start:]]
        assert later, "the node went on receiving after the snapshot"
        store.commit(Commit(entries=later))
    with backend.open() as store:
        stored = store.load()
    assert stored.entries == later
    recovered = recover_node(stored.snapshot, stored.entries)
    assert recovered.state_hash() == node.core.state_hash()
    # And from the genesis alone, without the snapshot.
    assert recover_node(None, written + later).state_hash() == node.core.state_hash()


def test_store_errors_say_what_failed(backend: Backend) -> None:
    with backend.open() as store:
        assert isinstance(store, Store)
    error = StoreError("full", "the disk is full")
    assert str(error) == "full: the disk is full" and error.code == "full"


def test_credentials_are_kept_found_and_revoked(backend: Backend) -> None:
    key = Credential("k1", "alice", "hmac", b"shared secret", 1_000)
    with backend.open() as store:
        store.put_credential(key)
        assert refusal(lambda: store.put_credential(key)).code == "conflict"
    with backend.open() as store:
        assert store.credential("k1") == key and store.credential("k2") is None
        assert store.revoke_credential("k1") and not store.revoke_credential("k2")
        found = store.credential("k1")
        assert found is not None and found.revoked
        # Found by its material too, revoked or not.
        assert store.credential_with(b"shared secret") == found
        assert store.credential_with(b"shared") is None


def test_a_trader_is_known_once_given_a_key_revoked_or_not(backend: Backend) -> None:
    with backend.open() as store:
        assert not store.has_trader("alice")
        store.put_credential(Credential("k1", "alice", "hmac", b"s", 1_000))
        assert store.has_trader("alice") and not store.has_trader("bob")
        assert not store.has_trader("alic") and not store.has_trader("%")
        store.revoke_credential("k1")
    with backend.open() as store:
        assert store.has_trader("alice")

"""The node's memory of used client order ids: "never seen" must be certain
(or a retry would be placed again), "maybe" rare (or every order would cost
a store read), and it must know every id its store holds after a restart."""

from __future__ import annotations

from pathlib import Path

from datn.runtime.seen import ClientIds
from datn.store import Commit, OrderRecord
from datn.store.sqlite import SQLiteStore


def test_an_id_it_was_given_is_never_reported_unseen_even_past_its_capacity() -> None:
    ids = ClientIds(capacity=1_000)
    given = [(f"t{n % 7}", f"c{n}") for n in range(5_000)]
    for trader, client in given:
        ids.add(trader, client)
    assert all(ids.may_hold(trader, client) for trader, client in given)
    assert len(ids) == 5_000
    # Grown by new filters (1k, 2k, 4k ids), not by losing what it holds.
    assert ids.nbytes < 5_000 * 3


def test_new_ids_are_rarely_mistaken_for_seen_ones() -> None:
    ids = ClientIds(capacity=10_000)
    for n in range(10_000):
        ids.add("alice", f"old-{n}")
    mistaken = sum(ids.may_hold("alice", f"new-{n}") for n in range(20_000))
    assert mistaken < 20_000 * 0.02
    # The same client order id of another trader is another id.
    assert sum(ids.may_hold("bob", f"old-{n}") for n in range(1_000)) < 50


def test_it_is_loaded_from_every_order_the_store_holds(tmp_path: Path) -> None:
    def record(order_id: int, trader: str, client: str) -> OrderRecord:
        return OrderRecord(order_id, trader, client, "xyz", "new", True, 0, 0, b"{}")

    orders = [record(n, f"t{n % 3}", f"c{n}") for n in range(1, 120_001)]
    orders.append(record(-(2**62) - 1, "t0", "rejected-one"))
    with SQLiteStore(tmp_path / "s.sqlite3") as store:
        store.commit(Commit(entries=[b"x"], orders=orders))
        ids = ClientIds.load(store)
    assert len(ids) == len(orders)
    assert all(ids.may_hold(o.trader_id, o.client_order_id) for o in orders)


def test_noting_an_id_says_whether_it_is_new_and_remembers_it() -> None:
    ids = ClientIds(capacity=100)
    assert ids.note("alice", "c1") is True
    assert ids.note("alice", "c1") is False
    assert ids.may_hold("alice", "c1") and len(ids) == 1

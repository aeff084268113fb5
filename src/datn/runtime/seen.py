"""Which client order ids a node has seen, without asking its store.

A retried order must get its original answer however long ago it was
placed, so before placing an order the node has to know whether the trader
used its client order id before. The core remembers recent ids; the store
holds every one. Asking the store for every order would cost a read per
order on the intake path, and nearly every answer is "no": a new id.

:class:`ClientIds` answers that question from memory: a Bloom filter of
every (trader id, client order id) the store holds or the node has been
given since it started. "No" is certain, so a new order costs no read;
"maybe" (every retry, and about one new id in 150) is settled by the
store. It grows as a scalable Bloom filter (a new, twice as large filter
when the last is full), so its false-positive rate stays bounded however
many ids come, at about 1.5 bytes an id: 15 MB for ten million orders.

It is built at start by paging through the store's orders, and lives only
in memory. The hash is Python's own, salted per process, so a trader cannot
choose ids that collide on purpose; the worst a collision does is cost a
store read.
"""

from __future__ import annotations

from datn.store import Store

BITS_PER_ID = 12
"""With four hashes: about 0.65 % false positives per filter."""
HASHES = 4
FIRST_CAPACITY = 1 << 20
_PAGE = 50_000
_LOW_ORDER_ID = -(2**63)
"""Below every stored order id (rejected orders are kept under negative ids)."""
_MASK32 = 0xFFFF_FFFF


class _Bloom:
    __slots__ = ("bits", "capacity", "count", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = capacity * BITS_PER_ID
        self.bits = bytearray((self.size + 7) // 8)
        self.count = 0


class ClientIds:
    """A scalable Bloom filter of (trader id, client order id) pairs."""

    def __init__(self, capacity: int = FIRST_CAPACITY) -> None:
        self._filters = [_Bloom(capacity)]

    @classmethod
    def load(cls, store: Store) -> ClientIds:
        """Every client order id ``store`` holds."""
        ids = cls()
        after = _LOW_ORDER_ID
        while True:
            page = store.client_order_ids(after, _PAGE)
            for _, trader_id, client_order_id in page:
                ids.add(trader_id, client_order_id)
            if len(page) < _PAGE:
                return ids
            after = page[-1][0]

    def __len__(self) -> int:
        return sum(f.count for f in self._filters)

    @property
    def nbytes(self) -> int:
        return sum(len(f.bits) for f in self._filters)

    def add(self, trader_id: str, client_order_id: str) -> None:
        self._add(hash((trader_id, client_order_id)))

    def note(self, trader_id: str, client_order_id: str) -> bool:
        """Remember the id; True if it was certainly never seen before."""
        whole = hash((trader_id, client_order_id))
        if self._may_hold(whole):
            return False
        self._add(whole)
        return True

    def may_hold(self, trader_id: str, client_order_id: str) -> bool:
        """False: never seen. True: perhaps seen (ask the store)."""
        return self._may_hold(hash((trader_id, client_order_id)))

    def _add(self, whole: int) -> None:
        last = self._filters[-1]
        if last.count >= last.capacity:
            last = _Bloom(last.capacity * 2)
            self._filters.append(last)
        last.count += 1
        step = ((whole >> 32) & _MASK32) | 1
        place = whole & _MASK32
        bits, size = last.bits, last.size
        for _ in range(HASHES):
            place = (place + step) % size
            bits[place >> 3] |= 1 << (place & 7)

    def _may_hold(self, whole: int) -> bool:
        step = ((whole >> 32) & _MASK32) | 1
        start = whole & _MASK32
        for bloom in self._filters:
            bits, size, place = bloom.bits, bloom.size, start
            for _ in range(HASHES):
                place = (place + step) % size
                if not bits[place >> 3] & (1 << (place & 7)):
                    break
            else:
                return True
        return False

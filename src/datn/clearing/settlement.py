"""Netted settlement statements between two peers (DESIGN.md section 7).

Every cycle the two nodes of a pair settle the trades between them that both
have booked. The node with the lower id proposes a statement: the cycle, the
trades it covers (by lock id, which both sides know) and the net amount per
asset. The other node recomputes the same statement from its own records; the
statement's hash is the thing both must agree on. Only then does either side
move the net amounts over the settlement rail. A statement the other side
cannot reproduce (a trade it has not booked yet, other terms) moves nothing
and is flagged; the trades stay open for the next cycle.

The net is given from the lower id's side: ``+n`` of an asset means the lower
id owes the higher id ``n`` (it is the balance of the higher id's account on
the lower id's ledger). The higher id's own records show the same amounts
negated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import msgspec

from datn.domain.value import NodeId, Value

Deltas = tuple[tuple[str, int], ...]
"""Per asset, the change one trade made to the peer's accounts: sorted by asset."""


class Statement(Value, frozen=True):
    """What two peers settle in one cycle: the trades (by lock id) and, per
    asset, what ``low`` owes ``high`` (negative: what it is owed), where
    ``low`` is the lower of the two node ids."""

    low: NodeId
    high: NodeId
    cycle: int
    lock_ids: tuple[int, ...]
    net: tuple[tuple[str, int], ...]


_ENCODER = msgspec.msgpack.Encoder()


def statement_hash(statement: Statement) -> str:
    """SHA-256 (hex) of the statement's canonical MessagePack encoding."""
    body = [
        statement.low,
        statement.high,
        statement.cycle,
        list(statement.lock_ids),
        [list(pair) for pair in statement.net],
    ]
    return hashlib.sha256(b"datn-statement-v1\x00" + _ENCODER.encode(body)).hexdigest()


def net_of(trades: Iterable[Deltas]) -> Deltas:
    """Sum per asset, zeros dropped, sorted by asset."""
    totals: dict[str, int] = {}
    for deltas in trades:
        for asset, amount in deltas:
            totals[asset] = totals.get(asset, 0) + amount
    return tuple(sorted((a, n) for a, n in totals.items() if n))


def build_statement(
    me: NodeId, peer: NodeId, cycle: int, unsettled: Mapping[int, Deltas]
) -> Statement:
    """The statement for every trade in ``unsettled`` (lock id -> the deltas it
    made to ``peer``'s accounts on ``me``'s ledger), from the lower id's side."""
    low, high = (me, peer) if me < peer else (peer, me)
    lock_ids = tuple(sorted(unsettled))
    net = net_of(unsettled[lock_id] for lock_id in lock_ids)
    if me != low:
        net = tuple((asset, -amount) for asset, amount in net)
    return Statement(low, high, cycle, lock_ids, net)


def reproduce(
    statement: Statement, me: NodeId, unsettled: Mapping[int, Deltas]
) -> tuple[Statement | None, str]:
    """``me``'s own version of a statement a peer proposed, from ``me``'s
    records of the same trades; None and the reason if ``me`` cannot."""
    if me not in (statement.low, statement.high) or statement.low >= statement.high:
        return None, "not_our_pair"
    missing = [lock_id for lock_id in statement.lock_ids if lock_id not in unsettled]
    if missing:
        return None, "unknown_trades"
    peer = statement.high if me == statement.low else statement.low
    mine = build_statement(me, peer, statement.cycle, {k: unsettled[k] for k in statement.lock_ids})
    return mine, "" if mine == statement else "different_terms"

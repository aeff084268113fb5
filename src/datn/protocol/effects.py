"""What the node core asks its runtime to do, and what it tells traders.

The core never performs I/O: each input returns a list of effects, in order.
A runtime executes them in that order, so a ``Journal`` effect that comes
first is durable before any ``Send`` or ``Reply`` that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from datn.protocol.clock import Hlc, Now
from datn.protocol.messages import Message, NodeId
from datn.protocol.venue import OrderRequest

# --------------------------------------------------------------- journal


@dataclass(frozen=True, slots=True)
class PlaceInput:
    request: OrderRequest


@dataclass(frozen=True, slots=True)
class CancelInput:
    trader_id: str
    order_id: int


@dataclass(frozen=True, slots=True)
class DepositInput:
    trader_id: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class ReceiveInput:
    sender: NodeId
    hlc: Hlc
    message: Message


@dataclass(frozen=True, slots=True)
class TickInput:
    pass


@dataclass(frozen=True, slots=True)
class RestartInput:
    """The node came back up: every lock it held before is void."""


Input = PlaceInput | CancelInput | DepositInput | ReceiveInput | TickInput | RestartInput


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One input and when it happened; the node's state is a function of these."""

    now: Now
    input: Input


# ---------------------------------------------------------- trader events


@dataclass(frozen=True, slots=True)
class Accepted:
    client_order_id: str
    order_id: int


@dataclass(frozen=True, slots=True)
class Rejected:
    client_order_id: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Executed:
    """A fill of the trader's order; ``counterparty`` is a node id, never a trader."""

    order_id: int
    trade_id: int
    price_ticks: int
    quantity_lots: int
    counterparty: NodeId


@dataclass(frozen=True, slots=True)
class Done:
    """The order is finished: nothing of it rests or is being worked.
    ``failed_holders`` names the peers that refused an acceptance for it (a
    FOK that filled only partly says here which holder failed)."""

    order_id: int
    filled_lots: int
    cancelled_lots: int
    reason: str
    failed_holders: tuple[NodeId, ...] = ()


@dataclass(frozen=True, slots=True)
class Rested:
    order_id: int
    resting_lots: int


TraderEvent = Accepted | Rejected | Executed | Done | Rested

# ----------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Journal:
    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class Send:
    peer: NodeId
    hlc: Hlc
    message: Message


@dataclass(frozen=True, slots=True)
class Reply:
    trader_id: str
    event: TraderEvent


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``tick`` when the monotonic clock reaches ``at_mono_ms``."""

    at_mono_ms: int


@dataclass(frozen=True, slots=True)
class Publish:
    """An anonymous trade print for the node's market-data feed."""

    product_id: str
    price_ticks: int
    quantity_lots: int
    executed: Hlc


Effect = Journal | Send | Reply | SetTimer | Publish

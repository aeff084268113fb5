"""What the node core asks its runtime to do, and what it tells traders.

The core never performs I/O: each input returns a list of effects, in order.
A runtime executes them in that order, so a ``Journal`` effect that comes
first is durable before any ``Send`` or ``Reply`` that follows it.
"""

from __future__ import annotations

from datn.domain.value import Value
from datn.protocol.clock import Hlc, Now
from datn.protocol.messages import Message, NodeId
from datn.protocol.venue import OrderRequest

# --------------------------------------------------------------- journal


class PlaceInput(Value, frozen=True):
    request: OrderRequest


class CancelInput(Value, frozen=True):
    trader_id: str
    order_id: int


class DepositInput(Value, frozen=True):
    trader_id: str
    asset: str
    amount: int


class FundInput(Value, frozen=True):
    """The operator adds ``amount`` of ``asset`` to the node's own capital."""

    asset: str
    amount: int


class BondInput(Value, frozen=True):
    """The operator posts ``amount`` more bond with ``peer``, or, with
    ``withdraw``, asks for that much of it back."""

    peer: NodeId
    amount: int
    withdraw: bool


class ReceiveInput(Value, frozen=True):
    sender: NodeId
    hlc: Hlc
    message: Message


class TickInput(Value, frozen=True):
    pass


class RestartInput(Value, frozen=True):
    """The node came back up: every lock it held before is void."""


Input = (
    PlaceInput
    | CancelInput
    | DepositInput
    | FundInput
    | BondInput
    | ReceiveInput
    | TickInput
    | RestartInput
)


class JournalEntry(Value, frozen=True):
    """One input and when it happened; the node's state is a function of these."""

    now: Now
    input: Input


# ---------------------------------------------------------- trader events


class Accepted(Value, frozen=True):
    client_order_id: str
    order_id: int


class Rejected(Value, frozen=True):
    client_order_id: str
    reason: str
    message: str


class Executed(Value, frozen=True):
    """A fill of the trader's order; ``counterparty`` is a node id, never a trader."""

    order_id: int
    trade_id: int
    price_ticks: int
    quantity_lots: int
    counterparty: NodeId


class Done(Value, frozen=True):
    """The order is finished: nothing of it rests or is being worked.
    ``failed_holders`` names the peers that refused an acceptance for it (a
    FOK that filled only partly says here which holder failed)."""

    order_id: int
    filled_lots: int
    cancelled_lots: int
    reason: str
    failed_holders: tuple[NodeId, ...] = ()


class Rested(Value, frozen=True):
    order_id: int
    resting_lots: int


TraderEvent = Accepted | Rejected | Executed | Done | Rested

# ----------------------------------------------------------------- effects


class Journal(Value, frozen=True):
    entry: JournalEntry


class Send(Value, frozen=True):
    peer: NodeId
    hlc: Hlc
    message: Message


class Reply(Value, frozen=True):
    trader_id: str
    event: TraderEvent


class SetTimer(Value, frozen=True):
    """Call ``tick`` when the monotonic clock reaches ``at_mono_ms``."""

    at_mono_ms: int


class Publish(Value, frozen=True):
    """An anonymous trade print for the node's market-data feed."""

    product_id: str
    price_ticks: int
    quantity_lots: int
    executed: Hlc


Effect = Journal | Send | Reply | SetTimer | Publish

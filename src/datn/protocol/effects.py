"""What goes into the node core, what it asks its runtime to do, and what it
tells traders.

The core never performs I/O: each input returns a list of effects, in order.
A runtime executes them in that order, so a ``Journal`` effect that comes
first is durable before any ``Send``, ``Reply`` or ``Pay`` that follows it.

Every input is journaled, and the first entry of every journal is the node's
:class:`Genesis`, so a node's state is a function of its journal alone.
"""

from __future__ import annotations

from typing import Final

from datn.domain import ProductSpec
from datn.domain.value import Value
from datn.protocol.clock import Hlc, Now
from datn.protocol.config import NodeConfig
from datn.protocol.messages import Message, NodeId
from datn.protocol.venue import OrderRequest

# --------------------------------------------------------------- genesis


class Genesis(Value, frozen=True):
    """Everything a node starts from: who it is, its rules, what it lists,
    whom it trades with, and the secret its unguessable ids are keyed with."""

    node_id: NodeId
    config: NodeConfig
    products: tuple[ProductSpec, ...]
    peers: tuple[NodeId, ...]
    secret: bytes
    reference_prices: tuple[tuple[str, int], ...] = ()
    """Opening marks by product id: what prices are judged against before
    the node has heard any trade."""


# --------------------------------------------------------------- inputs


CORE_LOGIC_VERSION: Final = 6
"""The version of how the core handles its inputs. Replay must give the
state the node had when it ran, so each genesis and restart entry records
the version of the logic that ran from it on, the core keeps it in its
state, and a change to how an input is handled raises this version and
applies only where the recorded version is as high: a journal written by an
older version replays as it ran. A node refuses to start on entries (after
its latest snapshot) that this code cannot replay so: see
:data:`OLDEST_REPLAYED_LOGIC_VERSION` and
:class:`datn.runtime.node.NodeRuntime`.

1. Journals before versions were recorded.
2. Routing skips a peer heard nothing from for three heartbeat periods.
3. A pause of the node itself (no input for longer than a heartbeat
   period) does not count towards its peers' silence; a FOK order that took
   nothing, with nothing in doubt, may have another round as other orders
   do.
4. A FOK order's next round asks again the holders whose offers it gave
   back for want of the rest, beside the others it asks.
5. An offer of a lock id the originator already has accepted, in doubt or
   unsettled with that holder is dropped, not taken as a second trade.
6. A holder that refuses a bond request after it was paid is suspended for
   it, and the money is booked as posted with it; a bond is not given back
   while trades it backs are unsettled; a peer suspended for a violation or
   on notices still settles, and is declared in default past the deadline;
   a settled statement clears other peers' notices of the peer's default;
   a lock counts against the holder's cap and quota at what the originator
   may come to owe through it (the mark against the price, for a sale into
   a bid far below the mark), not at its price alone; a statement proposed
   before a default is kept through it, and sent again once the peer is
   reinstated."""

OLDEST_REPLAYED_LOGIC_VERSION: Final = 1
"""The oldest core logic this code replays as it ran. Raised when the
logic of older versions is taken out of the core."""


class GenesisInput(Value, frozen=True):
    """The first entry of every journal."""

    genesis: Genesis
    logic_version: int = CORE_LOGIC_VERSION
    """The core logic the node was created with."""


class PlaceInput(Value, frozen=True):
    request: OrderRequest


class CancelInput(Value, frozen=True):
    trader_id: str
    order_id: int


class CancelAllInput(Value, frozen=True):
    """Cancel every open order of ``trader_id`` (in ``product_id`` only, if given)."""

    trader_id: str
    product_id: str | None = None


class DepositInput(Value, frozen=True):
    trader_id: str
    asset: str
    amount: int


class WithdrawInput(Value, frozen=True):
    """The operator pays ``amount`` of ``asset`` out to ``trader_id``: only
    from what the trader has available (nothing held for orders); an
    amount beyond it is refused and counted, and changes nothing."""

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


class BondReceivedInput(Value, frozen=True):
    """The node's settlement rail (an adapter, or the operator confirming by
    hand) reports ``amount`` of ``asset`` received from ``peer`` for its bond
    request ``bond_id``. Only this makes a peer's bond count: its request
    alone is a claim, not money."""

    peer: NodeId
    bond_id: int
    asset: str
    amount: int


class ReinstateInput(Value, frozen=True):
    """The operator trades with ``peer`` again after a suspension: open
    default claims on it are reversed and its unsettled trades settle as
    usual."""

    peer: NodeId


class AddPeerInput(Value, frozen=True):
    peer: NodeId


class AddProductInput(Value, frozen=True):
    product: ProductSpec
    reference_price_ticks: int | None = None


class ConfigInput(Value, frozen=True):
    """The operator changes the node's configuration."""

    config: NodeConfig


class ReceiveInput(Value, frozen=True):
    sender: NodeId
    hlc: Hlc
    message: Message


class TickInput(Value, frozen=True):
    pass


class RestartInput(Value, frozen=True):
    """The node came back up on a new monotonic clock: every lock it held
    before is void and every deadline it keeps is re-based."""

    logic_version: int = CORE_LOGIC_VERSION
    """The core logic the node runs from this entry on."""


Input = (
    GenesisInput
    | PlaceInput
    | CancelInput
    | CancelAllInput
    | DepositInput
    | WithdrawInput
    | FundInput
    | BondInput
    | BondReceivedInput
    | ReinstateInput
    | AddPeerInput
    | AddProductInput
    | ConfigInput
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
    FOK that filled only partly says here which holder failed).
    ``in_doubt_lots`` were accepted at a holder that has not decided yet:
    they are reported by :class:`WaitOver` when it does."""

    order_id: int
    filled_lots: int
    cancelled_lots: int
    reason: str
    failed_holders: tuple[NodeId, ...] = ()
    in_doubt_lots: int = 0


class Rested(Value, frozen=True):
    order_id: int
    resting_lots: int


class CancelAnswer(Value, frozen=True):
    """The answer to a cancel: ``cancelled`` (``cancelled_lots`` are gone),
    ``pending`` (``locked_lots`` are promised to a peer under a lock or an
    acceptance; their outcome follows when it ends), or ``unknown_order``."""

    order_id: int
    status: str
    cancelled_lots: int = 0
    locked_lots: int = 0


class Waiting(Value, frozen=True):
    """The order stopped waiting for ``holders`` to decide on ``lots`` it
    accepted from them: those lots stay reserved until each decides."""

    order_id: int
    holders: tuple[NodeId, ...]
    lots: int


class WaitOver(Value, frozen=True):
    """A holder the order had stopped waiting for decided on ``lots``:
    ``filled`` (an :class:`Executed` comes with it) or ``refused``."""

    order_id: int
    holder: NodeId
    lots: int
    outcome: str


TraderEvent = Accepted | Rejected | Executed | Done | Rested | CancelAnswer | Waiting | WaitOver

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
    """An anonymous trade print for the node's market-data feed: a trade of
    ``source``'s book (this node's own, or a peer's, as the peer printed it;
    ``executed``: a peer's trade print's own stamp, or this node's wall
    clock when an advert told it of the trade)."""

    product_id: str
    price_ticks: int
    quantity_lots: int
    executed: Hlc
    source: str = ""


class Pay(Value, frozen=True):
    """Move ``amount`` of ``asset`` to ``peer`` over the settlement rail, for
    ``purpose`` (``bond`` or ``bond_return``) and reference ``ref``."""

    peer: NodeId
    purpose: str
    ref: int
    asset: str
    amount: int


class Violation(Value, frozen=True):
    """``peer`` broke the protocol in a way its signed messages prove:
    ``messages`` are the frames in question (what it offered, what this node
    accepted, what it confirmed), for the store to keep as evidence."""

    peer: NodeId
    reason: str
    messages: tuple[Message, ...]


Effect = Journal | Send | Reply | SetTimer | Publish | Pay | Violation

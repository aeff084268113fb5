"""Market quality: one trader population, three worlds, the same orders.

datn exists so that one order reaches the liquidity of every clearing house.
This module measures what that is worth. A seeded *population* of traders,
each with a home node, private valuations and its own arrival times, sends
one sequence of orders. The sequence is replayed, order for order and at the
same virtual times, in worlds that differ only in where an order can reach:

* **fragmented**: N venues that never link. Each is a one-node simulation
  of its own (its genesis lists no peer, so it never broadcasts, adverts or
  posts a bond) holding only the traders whose home it is; the N run side by
  side on one virtual clock. Separate simulations were chosen over one
  network with every link cut because a node with no peer is a complete,
  ordinary venue: it sends no message that a cut would have to drop, its
  final checks (every ledger balanced, every asset conserved) hold as they
  do anywhere, and it runs exactly the code of the central exchange below.
* **datn**: the N nodes linked in one simulation, every node bonded with
  every other, targeted routing, every fault off: once on a clean network
  (1-5 ms a message, ``datn``) and once with a wide-area latency (by default
  5-40 ms a message, uniform, drawn for each message, ``datn-wan``).
* **central**: one node holding every trader, the single exchange that
  fragmentation is measured against. Its orders and trades do not depend on
  N (only the grouping of traders by home node that dispersion reads does).

The population (:func:`make_population`) depends on the seed and the flow's
size only. Each product has a common value that moves by -1, 0 or +1 steps
of a few basis points every 250 ms. Each trader has a persistent bias per
product and an activity rate, and arrives at exponential intervals. At each
arrival it picks a product, cancels its own resting orders in it (it
re-quotes), and sends one order: a buyer values the product at the common
value plus its bias plus a private gain, a seller at the common value plus
its bias less one. Most orders are GTC limits shaded inside the valuation by a
random margin, so they rest on either side of the common value; some are IOC
or FOK limits at the valuation, and some are market IOC orders. Quantities,
prices, times and balances are integers throughout; floats appear only in
the statistics.

Figures, per world (:class:`WorldFigures`). Fills are counted until every
order placed during the flow has finished or rested, so a fill that was in
flight when the flow stopped counts. Sampling moments are every
``sample_ms`` of the flow, each after the messages and timers due at that
moment and before an order placed at it.

* **fill rate** (:func:`fill_rate`): of the lots each order filled in the
  central world (the lots that could cross when every order reaches every
  other), the share it filled in this world, each order counted up to what
  it filled there. **Volume** (:func:`volume_ratio`) is the plain ratio of
  lots filled, both sides of every trade, to the central world's: it may
  exceed one, because two crossing orders that rest at two venues (instead
  of trading with each other) may each trade later with someone else.
* **effective spread**: for each fill of a *taking* order (one that had not
  rested when it filled), ``2 * |price - mid| / mid`` in basis points, where
  ``mid`` is the consolidated mid when the order arrived (after its
  trader's cancels, before the order acted):
  half the sum of the best unlocked bid and ask over every venue of the
  world, whether the order could reach them or not. Weighted by the fill's
  notional; fills of orders that arrived with one side of the consolidated
  book empty are left out.
* **price dispersion**: at each sampling moment and for each product, the
  range (highest minus lowest) of the latest fill prices of the traders of
  each home node, over the nodes whose traders filled in the last
  ``dispersion_window_ms``, in basis points of their mean; averaged over the
  moments at which at least two nodes qualify. In the central world every
  trader trades at the one venue, so what remains is the bid-ask bounce and
  the value's move within the window: the floor the other worlds are read
  against.
* **crossed time**: the share of (sampling moment, product) pairs at which
  some venue's best unlocked bid is above another venue's best unlocked ask.
  Locked quantity is promised to an order in flight and is left out; a
  venue's own unlocked quotes never cross.
* **trade-throughs**: the share of taken lots that filled at a worse price
  than an unlocked resting order of another trader, at any venue, at the
  moment the fill was reported to the taker, when that better order was
  also *standing* as the taking order arrived: resting, unlocked, within the
  order's limit, and rested at least the world's longest one-way delay
  before (its advert could have reached the taker's node; with no link the
  delay is zero). A fill worse than better orders none of which was standing
  is counted apart, as *in flight*: the better order was too new for the
  taker's node to know, or was locked for another order.
* **arbitrage profit**: what a trader with an account at every venue, who
  looks at every sampling moment, could lock in: buy every unlocked ask of one
  venue that is below an unlocked bid of another and sell it to that bid,
  best prices first, at the resting orders' prices. The arbitrageur is a
  measurement, not a participant: its trades are not placed, so it changes
  nothing; it remembers which lots of each resting order it has already
  counted, and never counts them twice.
* **surplus**: for every fill, ``(valuation - price) * lots`` for a buyer
  and ``(price - valuation) * lots`` for a seller, in money, summed over all
  traders: the gains from trade the market delivered (a price paid by one of
  the population's traders to another cancels out; what counts is who
  traded with whom).
* **messages per order**: peer messages on the order path (broadcasts,
  potential trades, acceptances, releases, confirmations, refusals), and all
  peer messages (adverts, heartbeats and settlement too), from the first
  order to the end, per order placed. The bond set-up before trading is not
  counted.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from datn.book import OrderBook
from datn.domain import USD, ProductSpec, Side, TimeInForce
from datn.protocol.effects import (
    Accepted,
    Executed,
    Rejected,
    Reply,
    Rested,
    Send,
    TraderEvent,
)
from datn.protocol.messages import NodeId, PotentialTrades
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig
from datn.sim.network import (
    ORDER_MESSAGES,
    PRODUCTS,
    STARTING_CASH_MINOR,
    STARTING_LOTS,
    Faults,
    Simulation,
)

WAN_LATENCY_MS: Final = (5, 40)
"""One-way delay of a message between nodes on one continent, uniform."""
LAN_LATENCY_MS: Final = Faults().latency_ms
BPS: Final = 10_000
VALUE_STEP_MS: Final = 250
VALUE_STEP_BPS: Final = 2
"""The common value moves by -1, 0 or +1 such steps every VALUE_STEP_MS."""
BIAS_BPS: Final = 10
"""A trader's persistent view of a product: uniform in +/- this."""
PRIVATE_BPS: Final = 40
"""A trader's private gain from a trade, at each arrival: uniform in [0, this]."""
SHADE_BPS: Final = 40
"""How far a GTC limit is priced inside the trader's valuation: uniform in [0, this]."""
QUANTITIES_LOTS: Final = (1, 2, 3, 5, 10)
MARKET_PCT: Final = 5
"""Orders that are market IOC orders, in percent; then IOC limits at the valuation..."""
IOC_PCT: Final = 12
FOK_PCT: Final = 3
"""...and FOK limits at the valuation; every other order is a GTC limit."""
_BIG_LOTS: Final = 2**40

_REFERENCE: Final[dict[str, int]] = {spec.product_id: price for spec, price in PRODUCTS}
_SPECS: Final[dict[str, ProductSpec]] = {spec.product_id: spec for spec, _ in PRODUCTS}

# =============================================================== population


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """The size of a population's flow."""

    traders: int = 150
    orders: int = 1_800
    """Orders expected over the flow (the arrivals are random)."""
    duration_ms: int = 60_000
    sample_ms: int = 50
    dispersion_window_ms: int = 2_000


@dataclass(frozen=True, slots=True)
class Arrival:
    """One trader's order, as the population sends it in every world."""

    index: int
    at_ms: int
    trader: int
    product_id: str
    side: Side
    quantity_lots: int
    price_ticks: int | None
    time_in_force: TimeInForce
    valuation_ticks: int

    @property
    def client_order_id(self) -> str:
        return f"o{self.index}"


@dataclass(frozen=True, slots=True)
class Population:
    seed: int
    flow: FlowSpec
    arrivals: tuple[Arrival, ...]

    def trader_id(self, trader: int) -> str:
        return f"t{trader:04d}"

    def home(self, trader: int, nodes: int) -> int:
        """Traders are spread over the nodes in turn."""
        return trader % nodes


def make_population(seed: int, flow: FlowSpec) -> Population:
    """The traders and their orders for ``seed``; see the module docstring."""
    rng = random.Random(f"market-quality:{seed}")
    values = {pid: _value_path(rng, ref, flow.duration_ms) for pid, ref in _REFERENCE.items()}
    products = sorted(_REFERENCE)
    biases = [
        {pid: _bps(_REFERENCE[pid], rng.randint(-BIAS_BPS, BIAS_BPS)) for pid in products}
        for _ in range(flow.traders)
    ]
    mean_interval_ms = flow.traders * flow.duration_ms / max(flow.orders, 1)
    times: list[tuple[int, int]] = []
    for trader in range(flow.traders):
        interval_ms = mean_interval_ms / rng.uniform(0.5, 1.5)
        at = rng.expovariate(1 / interval_ms)
        while at < flow.duration_ms:
            times.append((int(at), trader))
            at += rng.expovariate(1 / interval_ms)
    times.sort()
    arrivals = []
    for index, (at_ms, trader) in enumerate(times):
        product_id = rng.choice(products)
        value = values[product_id][at_ms // VALUE_STEP_MS] + biases[trader][product_id]
        arrivals.append(_arrival(rng, index, at_ms, trader, product_id, value))
    return Population(seed, flow, tuple(arrivals))


def _value_path(rng: random.Random, reference: int, duration_ms: int) -> list[int]:
    step = max(1, _bps(reference, VALUE_STEP_BPS))
    path = [reference]
    for _ in range(duration_ms // VALUE_STEP_MS):
        path.append(path[-1] + step * rng.randint(-1, 1))
    return path


def _bps(reference: int, bps: int) -> int:
    """``bps`` basis points of ``reference``, rounded towards zero."""
    ticks = reference * abs(bps) // BPS
    return -ticks if bps < 0 else ticks


def _arrival(
    rng: random.Random, index: int, at_ms: int, trader: int, product_id: str, value: int
) -> Arrival:
    reference = _REFERENCE[product_id]
    side = rng.choice((Side.BUY, Side.SELL))
    sign = 1 if side is Side.BUY else -1
    valuation = max(1, value + sign * _bps(reference, rng.randint(0, PRIVATE_BPS)))
    quantity = rng.choice(QUANTITIES_LOTS)
    roll = rng.randrange(100)
    price: int | None = valuation
    tif = TimeInForce.GTC
    if roll < MARKET_PCT:
        price, tif = None, TimeInForce.IOC
    elif roll < MARKET_PCT + IOC_PCT:
        tif = TimeInForce.IOC
    elif roll < MARKET_PCT + IOC_PCT + FOK_PCT:
        tif = TimeInForce.FOK
    else:
        price = max(1, valuation - sign * _bps(reference, rng.randint(0, SHADE_BPS)))
    return Arrival(index, at_ms, trader, product_id, side, quantity, price, tif, valuation)


# ==================================================================== worlds


@dataclass(frozen=True, slots=True)
class World:
    """Where orders can reach: ``venues`` nodes, which trade with each
    other if ``linked``, for a population whose traders are homed at
    ``nodes`` nodes (the central world has one venue for all of them)."""

    name: str
    nodes: int
    venues: int
    linked: bool
    latency_ms: tuple[int, int] = LAN_LATENCY_MS
    core: type[NodeCore] = NodeCore
    """What every linked node runs: the node core, or a variant of it (what-if runs)."""

    def config(self) -> NodeConfig:
        """What every node of the world runs with: the simulator's default."""
        risk = RiskConfig(listed_products=frozenset(spec.product_id for spec, _ in PRODUCTS))
        return NodeConfig(risk, targeted_routing=True)

    @property
    def in_flight_ms(self) -> int:
        """How long an advert may take to reach another node."""
        return self.latency_ms[1] if self.linked else 0


def worlds(nodes: int, wan_latency_ms: tuple[int, int] = WAN_LATENCY_MS) -> list[World]:
    """The worlds compared at ``nodes`` nodes, the ideal first."""
    return [
        World("central", nodes, 1, linked=False),
        World("fragmented", nodes, nodes, linked=False),
        World("datn", nodes, nodes, linked=True),
        World("datn-wan", nodes, nodes, linked=True, latency_ms=wan_latency_ms),
    ]


@dataclass
class WorldFigures:
    """What one world delivered to the population; see the module docstring."""

    world: str
    nodes: int
    seed: int
    orders: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    filled_lots: int = 0
    filled_by_order: Counter[int] = field(default_factory=Counter)
    trades: int = 0
    surplus_minor: int = 0
    taken_lots: int = 0
    traded_through_lots: int = 0
    traded_through_local_lots: int = 0
    """Traded-through lots that filled against the taker's own node."""
    in_flight_lots: int = 0
    spread_weighted_bps: float = 0.0
    spread_notional_minor: int = 0
    dispersion_sum_bps: float = 0.0
    dispersion_moments: int = 0
    crossed_moments: int = 0
    moments: int = 0
    arbitrage_minor: int = 0
    order_messages: int = 0
    messages: int = 0
    message_types: Counter[str] = field(default_factory=Counter)
    node_stats: Counter[str] = field(default_factory=Counter)
    limited: Counter[str] = field(default_factory=Counter)
    """Why holders offered less than they had (``PotentialTrades.limited``)."""
    late_answers: int = 0
    """Answers with offers that reached their originator after its round
    closed (its collection window, or its other holders, decided first)."""
    late_offered_lots: int = 0
    client_order_ids: list[str] = field(default_factory=list)

    @property
    def effective_spread_bps(self) -> float:
        return (
            self.spread_weighted_bps / self.spread_notional_minor
            if self.spread_notional_minor
            else 0.0
        )

    @property
    def dispersion_bps(self) -> float:
        return self.dispersion_sum_bps / self.dispersion_moments if self.dispersion_moments else 0.0

    @property
    def crossed_pct(self) -> float:
        return 100 * self.crossed_moments / self.moments if self.moments else 0.0

    @property
    def trade_through_pct(self) -> float:
        return 100 * self.traded_through_lots / self.taken_lots if self.taken_lots else 0.0

    @property
    def in_flight_pct(self) -> float:
        return 100 * self.in_flight_lots / self.taken_lots if self.taken_lots else 0.0

    @property
    def order_messages_per_order(self) -> float:
        return self.order_messages / self.orders if self.orders else 0.0

    @property
    def messages_per_order(self) -> float:
        return self.messages / self.orders if self.orders else 0.0


class MarketSimulation(Simulation):
    """The simulator, telling its world's recorder every trader event and
    every answer a holder sends."""

    def __init__(self, recorder: _Recorder, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self.start_ms = 0
        self.setup_messages: Counter[str] = Counter()

    def _reply(self, node_id: NodeId, effect: Reply) -> None:
        self.recorder.on_event(self, node_id, effect.event)
        super()._reply(node_id, effect)

    def _send(self, sender: NodeId, effect: Send) -> None:
        message = effect.message
        if type(message) is PotentialTrades and message.limited:
            self.recorder.figures.limited[message.limited] += 1
        super()._send(sender, effect)

    def _deliver(self, sender: NodeId, receiver: NodeId, payload: Send | bytes) -> None:
        if type(payload) is Send and type(payload.message) is PotentialTrades:
            self._note_answer(sender, receiver, payload.message)
        super()._deliver(sender, receiver, payload)

    def _note_answer(self, holder: NodeId, originator: NodeId, answer: PotentialTrades) -> None:
        """Count offers that reach their originator after its round closed."""
        if not answer.offers:
            return
        working_orders = self.nodes[originator].core.originator
        order_id = working_orders._requests.get(answer.request_id)
        working = None if order_id is None else working_orders.working.get(order_id)
        if working is None or working.round != answer.round or holder not in working.awaiting:
            figures = self.recorder.figures
            figures.late_answers += 1
            figures.late_offered_lots += sum(offer.quantity_lots for offer in answer.offers)


@dataclass(slots=True)
class _Venue:
    sim: MarketSimulation
    node_id: NodeId

    def book(self, product_id: str) -> OrderBook:
        return self.sim.nodes[self.node_id].core.resting.books[product_id]


@dataclass(slots=True)
class _Quote:
    """The best unlocked prices of one venue for one product."""

    bid: int | None
    ask: int | None


class _Recorder:
    """Follows one world's orders and samples its venues."""

    def __init__(self, population: Population, world: World) -> None:
        self.population = population
        self.world = world
        self.figures = WorldFigures(world.name, world.nodes, population.seed)
        self.venues: list[_Venue] = []
        self.venue_of: dict[tuple[int, NodeId], int] = {}
        """Venue index by (simulation id, node id)."""
        self.arrival_of: dict[tuple[int, int], Arrival] = {}
        """The arrival behind each accepted order, by (venue, order id)."""
        self.rested_at: dict[tuple[int, int], int] = {}
        self.mid_at_arrival: dict[int, float] = {}
        self.reachable: dict[int, frozenset[tuple[int, int]]] = {}
        """By arrival: the unlocked resting orders within its limit, at any
        venue, that had rested at least the world's longest one-way delay
        before it arrived."""
        self.last_trade: dict[tuple[int, str], tuple[int, int]] = {}
        """(time, price) of the latest fill of a trader of each home node, by
        (node, product)."""
        self.consumed: Counter[tuple[int, int]] = Counter()
        """Lots of each resting order the arbitrageur has counted."""

    def add_venue(self, sim: MarketSimulation, node_id: NodeId) -> None:
        self.venue_of[(id(sim), node_id)] = len(self.venues)
        self.venues.append(_Venue(sim, node_id))

    # ---------------------------------------------------------- events

    def on_event(self, sim: MarketSimulation, node_id: NodeId, event: TraderEvent) -> None:
        venue = self.venue_of[(id(sim), node_id)]
        now_ms = sim.time_ms - sim.start_ms
        if isinstance(event, Executed):
            self._executed(venue, event, now_ms)
        elif isinstance(event, Rested):
            self.rested_at[(venue, event.order_id)] = now_ms
        elif isinstance(event, Accepted):
            index = int(event.client_order_id[1:])
            self.arrival_of[(venue, event.order_id)] = self.population.arrivals[index]
            self.figures.accepted += 1
        elif isinstance(event, Rejected):
            self.figures.rejected[event.reason] += 1

    def _executed(self, venue: int, event: Executed, now_ms: int) -> None:
        figures = self.figures
        arrival = self.arrival_of[(venue, event.order_id)]
        spec = _SPECS[arrival.product_id]
        lots, price = event.quantity_lots, event.price_ticks
        gain = arrival.valuation_ticks - price
        if arrival.side is Side.SELL:
            gain = -gain
        figures.surplus_minor += spec.notional_minor(lots, gain)
        figures.filled_lots += lots
        figures.filled_by_order[arrival.index] += lots
        figures.trades += 1
        home = self.population.home(arrival.trader, self.world.nodes)
        self.last_trade[(home, arrival.product_id)] = (now_ms, price)
        if (venue, event.order_id) in self.rested_at:
            return  # the resting side of the trade: its taker is counted
        figures.taken_lots += lots
        mid = self.mid_at_arrival.get(arrival.index)
        if mid is not None:
            notional = spec.notional_minor(lots, price)
            figures.spread_weighted_bps += notional * 2 * abs(price - mid) / mid * BPS
            figures.spread_notional_minor += notional
        local = event.counterparty == self.venues[venue].node_id
        self._trade_through(arrival, price, lots, local)

    def _trade_through(self, arrival: Arrival, price: int, lots: int, local: bool) -> None:
        """Count a fill that a better unlocked order at some venue could have had."""
        figures = self.figures
        better = price - 1 if arrival.side is Side.BUY else price + 1
        trader_id = self.population.trader_id(arrival.trader)
        known = self.reachable.get(arrival.index, frozenset())
        found = False
        for index, venue in enumerate(self.venues):
            book = venue.book(arrival.product_id)
            for order_id, _, _ in book.lockable(arrival.side, better, _BIG_LOTS, trader_id):
                found = True
                if (index, order_id) in known:
                    figures.traded_through_lots += lots
                    if local:
                        figures.traded_through_local_lots += lots
                    return
        if found:
            figures.in_flight_lots += lots

    # ------------------------------------------------------- sampling

    def quotes(self, product_id: str) -> list[_Quote]:
        return [
            _Quote(
                _best_unlocked(v.book(product_id), Side.BUY),
                _best_unlocked(v.book(product_id), Side.SELL),
            )
            for v in self.venues
        ]

    def note_arrival(self, arrival: Arrival) -> None:
        """The consolidated mid as ``arrival`` reaches its node, and the
        resting orders within its limit it could know of."""
        quotes = self.quotes(arrival.product_id)
        bids = [q.bid for q in quotes if q.bid is not None]
        asks = [q.ask for q in quotes if q.ask is not None]
        if bids and asks:
            self.mid_at_arrival[arrival.index] = (max(bids) + min(asks)) / 2
        trader_id = self.population.trader_id(arrival.trader)
        home = self.population.home(arrival.trader, len(self.venues))
        known = set()
        for index, venue in enumerate(self.venues):
            # The order's own node knows its book at once; another's, by adverts.
            horizon_ms = arrival.at_ms - (0 if index == home else self.world.in_flight_ms)
            book = venue.book(arrival.product_id)
            for order_id, _, _ in book.lockable(
                arrival.side, arrival.price_ticks, _BIG_LOTS, trader_id
            ):
                if self.rested_at[(index, order_id)] <= horizon_ms:
                    known.add((index, order_id))
        if known:
            self.reachable[arrival.index] = frozenset(known)

    def sample(self, now_ms: int) -> None:
        for product_id in _SPECS:
            self.figures.moments += 1
            quotes = self.quotes(product_id)
            if _crossed(quotes):
                self.figures.crossed_moments += 1
                self._arbitrage(product_id, quotes)
            self._dispersion(product_id, now_ms)

    def _dispersion(self, product_id: str, now_ms: int) -> None:
        window_ms = self.population.flow.dispersion_window_ms
        prices = []
        for node in range(self.world.nodes):
            last = self.last_trade.get((node, product_id))
            if last is not None and now_ms - last[0] <= window_ms:
                prices.append(last[1])
        if len(prices) >= 2:
            mean = sum(prices) / len(prices)
            self.figures.dispersion_sum_bps += (max(prices) - min(prices)) / mean * BPS
            self.figures.dispersion_moments += 1

    def _arbitrage(self, product_id: str, quotes: list[_Quote]) -> None:
        """Buy low at one venue, sell high at another, each lot counted once."""
        top_bid = max(q.bid for q in quotes if q.bid is not None)
        low_ask = min(q.ask for q in quotes if q.ask is not None)
        bids: list[tuple[int, int, int, int]] = []
        asks: list[tuple[int, int, int, int]] = []
        for index, venue in enumerate(self.venues):
            book = venue.book(product_id)
            for order_id, price, lots in book.lockable(Side.SELL, low_ask + 1, _BIG_LOTS):
                left = lots - self.consumed[(index, order_id)]
                if left > 0:
                    bids.append((-price, index, order_id, left))
            for order_id, price, lots in book.lockable(Side.BUY, top_bid - 1, _BIG_LOTS):
                left = lots - self.consumed[(index, order_id)]
                if left > 0:
                    asks.append((price, index, order_id, left))
        bids.sort()
        asks.sort()
        spec = _SPECS[product_id]
        i = j = 0
        while i < len(bids) and j < len(asks) and -bids[i][0] > asks[j][0]:
            bid_key, ask_key = bids[i][1:3], asks[j][1:3]
            assert bid_key[0] != ask_key[0], "a venue's unlocked quotes never cross"
            lots = min(bids[i][3], asks[j][3])
            self.figures.arbitrage_minor += spec.notional_minor(lots, -bids[i][0] - asks[j][0])
            bids[i] = (*bids[i][:3], bids[i][3] - lots)
            asks[j] = (*asks[j][:3], asks[j][3] - lots)
            self.consumed[bid_key] += lots
            self.consumed[ask_key] += lots
            if bids[i][3] == 0:
                i += 1
            if asks[j][3] == 0:
                j += 1


def _best_unlocked(book: OrderBook, side: Side) -> int | None:
    levels = 4
    while True:
        views = book.depth(side, levels)
        for level in views:
            if level.quantity_lots > level.locked_lots:
                return level.price_ticks
        if len(views) < levels:
            return None
        levels *= 4


def _crossed(quotes: Sequence[_Quote]) -> bool:
    """Whether a bid at one venue is above an ask at another."""
    bids = sorted((q.bid, i) for i, q in enumerate(quotes) if q.bid is not None)
    asks = sorted((q.ask, i) for i, q in enumerate(quotes) if q.ask is not None)
    if not bids or not asks:
        return False
    (bid, bid_venue), (ask, ask_venue) = bids[-1], asks[0]
    if bid_venue != ask_venue:
        return bid > ask
    return (len(bids) > 1 and bids[-2][0] > ask) or (len(asks) > 1 and bid > asks[1][0])


# ==================================================================== runs


def run_world(population: Population, world: World) -> WorldFigures:
    """Replay ``population``'s orders in ``world``; the figures it gave."""
    recorder = _Recorder(population, world)
    sims = (
        _linked(population, world, recorder)
        if world.linked
        else _venues(population, world, recorder)
    )
    flow = population.flow
    # A sampling moment comes before an order at the same time.
    events: list[tuple[int, int, Arrival | None]] = [
        (at_ms, 0, None) for at_ms in range(flow.sample_ms, flow.duration_ms + 1, flow.sample_ms)
    ]
    events.extend((a.at_ms, 1, a) for a in population.arrivals)
    for at_ms, _, arrival in sorted(events, key=lambda e: (e[0], e[1])):
        for sim in sims:
            _advance(sim, at_ms)
        if arrival is None:
            recorder.sample(at_ms)
        else:
            _place(recorder, world, arrival)
    for sim in sims:
        _advance(sim, flow.duration_ms)
        sim.heal()
        sim.settle()
        sim.check_final()
    _count_messages(recorder.figures, sims)
    return recorder.figures


def _linked(population: Population, world: World, recorder: _Recorder) -> list[MarketSimulation]:
    """N nodes bonded with each other: the bond set-up runs before the flow."""
    faults = Faults(latency_ms=world.latency_ms)
    sim = MarketSimulation(
        recorder,
        population.seed,
        world.venues,
        traders=0,
        faults=faults,
        config=world.config(),
        honest=world.core,
    )
    sim.per_event_checks = False
    sim.traders = {node_id: _traders_at(population, world, v) for v, node_id in enumerate(sim.ids)}
    sim.fund()
    _start(sim)
    for node_id in sim.ids:
        recorder.add_venue(sim, node_id)
    return [sim]


def _venues(population: Population, world: World, recorder: _Recorder) -> list[MarketSimulation]:
    """One node alone per venue, in a simulation of its own: nothing to link."""
    sims = []
    for venue in range(world.venues):
        sim = MarketSimulation(
            recorder, population.seed, 1, traders=0, faults=Faults(), config=world.config()
        )
        sim.per_event_checks = False
        (node_id,) = sim.ids
        sim.traders = {node_id: _traders_at(population, world, venue)}
        _deposit(sim, node_id)
        _start(sim)
        recorder.add_venue(sim, node_id)
        sims.append(sim)
    return sims


def _traders_at(population: Population, world: World, venue: int) -> list[str]:
    return [
        population.trader_id(trader)
        for trader in range(population.flow.traders)
        if population.home(trader, world.venues) == venue
    ]


def _deposit(sim: Simulation, node_id: NodeId) -> None:
    """Every trader's starting cash and lots, as ``Simulation.fund`` deposits them."""
    core = sim.nodes[node_id].core
    for trader in sim.traders[node_id]:
        sim._apply(node_id, core.deposit(trader, USD.code, STARTING_CASH_MINOR, sim.now(node_id)))
        sim.deposited[USD.code] += STARTING_CASH_MINOR
        for spec, _ in PRODUCTS:
            pid = spec.product_id
            sim._apply(node_id, core.deposit(trader, pid, STARTING_LOTS, sim.now(node_id)))
            sim.deposited[pid] += STARTING_LOTS


def _start(sim: MarketSimulation) -> None:
    """The flow starts now: what was sent before it is set-up."""
    sim.start_ms = sim.time_ms
    sim.setup_messages = Counter(sim.report.messages)


def _advance(sim: MarketSimulation, at_ms: int) -> None:
    """Run ``sim`` through every event up to flow time ``at_ms``, and stop its clock there."""
    until = sim.start_ms + at_ms
    sim.run(until_ms=until)
    sim.time_ms = max(sim.time_ms, until)


def _place(recorder: _Recorder, world: World, arrival: Arrival) -> None:
    """The trader cancels its resting orders in the product, then sends its order."""
    population = recorder.population
    venue = recorder.venues[population.home(arrival.trader, world.venues)]
    sim, node_id = venue.sim, venue.node_id
    core = sim.nodes[node_id].core
    trader_id = population.trader_id(arrival.trader)
    for order_id in core.resting.of_trader(trader_id, arrival.product_id):
        sim._apply(node_id, core.cancel(trader_id, order_id, sim.now(node_id)))
    recorder.note_arrival(arrival)
    request = OrderRequest(
        trader_id,
        arrival.client_order_id,
        arrival.product_id,
        arrival.side,
        arrival.quantity_lots,
        arrival.price_ticks,
        arrival.time_in_force,
    )
    recorder.figures.orders += 1
    recorder.figures.client_order_ids.append(arrival.client_order_id)
    sim._apply(node_id, core.place(request, sim.now(node_id)))


def _count_messages(figures: WorldFigures, sims: Sequence[MarketSimulation]) -> None:
    for sim in sims:
        sent = Counter(sim.report.messages)
        sent.subtract(sim.setup_messages)
        figures.message_types.update(+sent)
        for node in sim.nodes.values():
            figures.node_stats.update(node.core.stats)
    figures.order_messages = sum(figures.message_types[t.__name__] for t in ORDER_MESSAGES)
    figures.messages = sum(figures.message_types.values())


def compare(
    seed: int,
    nodes: int,
    flow: FlowSpec,
    wan_latency_ms: tuple[int, int] = WAN_LATENCY_MS,
) -> dict[str, WorldFigures]:
    """Every world at ``nodes`` nodes for one seed, by name."""
    population = make_population(seed, flow)
    return {world.name: run_world(population, world) for world in worlds(nodes, wan_latency_ms)}


def fill_rate(figures: WorldFigures, central: WorldFigures) -> float:
    """Of the lots each order filled in the central world, the share it
    filled in this one."""
    could = central.filled_by_order
    filled = sum(min(lots, figures.filled_by_order[index]) for index, lots in could.items())
    return filled / sum(could.values()) if could else 0.0


def volume_ratio(figures: WorldFigures, central: WorldFigures) -> float:
    """Lots filled in a world over lots filled in the central world."""
    return figures.filled_lots / central.filled_lots if central.filled_lots else 0.0


__all__ = [
    "LAN_LATENCY_MS",
    "WAN_LATENCY_MS",
    "Arrival",
    "FlowSpec",
    "MarketSimulation",
    "Population",
    "World",
    "WorldFigures",
    "compare",
    "fill_rate",
    "make_population",
    "run_world",
    "volume_ratio",
    "worlds",
]

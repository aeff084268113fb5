"""A seeded single-node trading session: the main job until nodes network.

Traders are funded with cash and lots, then send a realistic flow (GTC limits
near a drifting mid, IOC, FOK, market orders and cancels) to one
:class:`~datn.protocol.venue.LocalVenue` in virtual time. Every trade is real:
matched by the book, checked by the risk policies, booked in the ledger. The
invariants are checked after every step, and the totals per asset are compared
with what was deposited at the end.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from datn.domain import USD, DomainError, ProductKind, ProductSpec, Side, TimeInForce, Trade
from datn.protocol.venue import LocalVenue, OrderRequest, PlaceResult
from datn.risk import RiskConfig

PRODUCTS = (
    (ProductSpec("XYZ", ProductKind.SHARE, USD.code), 5_000),
    (ProductSpec("ACME", ProductKind.SHARE, USD.code, tick_size_minor=5), 2_400),
    (
        ProductSpec(
            "UST-2030",
            ProductKind.BOND,
            USD.code,
            lot_size=10,
            attributes=(("coupon_bps", "425"), ("maturity", "2030-11-15")),
        ),
        9_800,
    ),
)
"""Products with their opening reference price in ticks."""

STARTING_CASH_MINOR = 5_000_000
STARTING_LOTS = 400


class InvariantError(AssertionError):
    """The core broke an invariant; the message says which, and the seed."""


@dataclass
class SessionReport:
    seed: int
    orders: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    cancels: int = 0
    trades: list[Trade] = field(default_factory=list)
    deposited: dict[str, int] = field(default_factory=dict)


class Session:
    def __init__(self, seed: int, traders: int, emit: Callable[[str], None]) -> None:
        self.rng = random.Random(seed)
        self.emit = emit
        self.report = SessionReport(seed)
        self.products: dict[str, ProductSpec] = {spec.product_id: spec for spec, _ in PRODUCTS}
        self.mids: dict[str, int] = {spec.product_id: price for spec, price in PRODUCTS}
        config = RiskConfig(
            listed_products=frozenset(spec.product_id for spec, _ in PRODUCTS),
            max_quantity_lots=500,
            price_band_bps=1_000,
            max_open_orders=40,
        )
        self.venue = LocalVenue(self.products.values(), config, reference_prices=self.mids)
        self.traders = [f"t{i:02d}" for i in range(1, traders + 1)]
        self.now_ms = 0
        self.client_ids = 0

    def fund(self) -> None:
        deposited = self.report.deposited
        for trader in self.traders:
            self.venue.deposit(trader, USD.code, STARTING_CASH_MINOR)
            deposited[USD.code] = deposited.get(USD.code, 0) + STARTING_CASH_MINOR
            for product_id in self.products:
                self.venue.deposit(trader, product_id, STARTING_LOTS)
                deposited[product_id] = deposited.get(product_id, 0) + STARTING_LOTS

    def step(self) -> None:
        self.now_ms += self.rng.randint(1, 40)
        trader = self.rng.choice(self.traders)
        open_ids = self.venue.open_order_ids(trader)
        if open_ids and self.rng.random() < 0.25:
            self.venue.cancel(trader, self.rng.choice(open_ids))
            self.report.cancels += 1
        else:
            self._send(self._request(trader))
        problems = self.venue.check_invariants()
        if problems:
            raise InvariantError(f"seed {self.report.seed}: " + "; ".join(problems))

    def _request(self, trader: str) -> OrderRequest:
        spec = self.rng.choice(list(self.products.values()))
        mid = self._drift(spec)
        side = self.rng.choice((Side.BUY, Side.SELL))
        quantity = self.rng.choice((1, 2, 5, 10, 10, 20, 50))
        roll = self.rng.random()
        self.client_ids += 1
        client_id = f"c{self.client_ids}"
        if roll < 0.12:
            return OrderRequest(
                trader, client_id, spec.product_id, side, quantity, None, TimeInForce.IOC
            )
        # Buyers lean above the mid and sellers below often enough that books cross.
        lean = self.rng.randint(-6, 3) if side is Side.BUY else self.rng.randint(-3, 6)
        price = max(1, mid + lean * (10 // spec.tick_size_minor or 1))
        tif = (
            TimeInForce.GTC if roll < 0.80 else TimeInForce.IOC if roll < 0.92 else TimeInForce.FOK
        )
        return OrderRequest(trader, client_id, spec.product_id, side, quantity, price, tif)

    def _drift(self, spec: ProductSpec) -> int:
        mid = self.mids[spec.product_id] + self.rng.randint(-2, 2)
        self.mids[spec.product_id] = mid
        return mid

    def _send(self, request: OrderRequest) -> None:
        self.report.orders += 1
        result = self.venue.place(request, self.now_ms)
        if not result.accepted:
            self.report.rejected[result.reason or "unknown"] += 1
            return
        self.report.accepted += 1
        self._show(request, result)

    def _show(self, request: OrderRequest, result: PlaceResult) -> None:
        spec = self.products[request.product_id]
        for trade in result.trades:
            self.report.trades.append(trade)
            price = USD.format_minor(trade.price_ticks * spec.tick_size_minor)
            verb = "bought" if trade.taker_side is Side.BUY else "sold"
            self.emit(
                f"{_clock(self.now_ms)}  {spec.symbol:<9} {request.trader_id} {verb} "
                f"{trade.quantity_lots:>3} @ {price:>12}  (order {trade.taker_order_id} "
                f"hit resting order {trade.maker_order_id})"
            )

    def check_conservation(self) -> None:
        """Per asset, traders together hold exactly what was deposited."""
        for asset, deposited in self.report.deposited.items():
            held = sum(self.venue.balance(trader, asset) for trader in self.traders)
            if held != deposited:
                raise InvariantError(
                    f"seed {self.report.seed}: {asset} deposited {deposited}, ledgers hold {held}"
                )


def _clock(now_ms: int) -> str:
    seconds, ms = divmod(now_ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes:02d}:{seconds:02d}.{ms:03d}"


def run_session(
    seed: int, orders: int, traders: int, emit: Callable[[str], None]
) -> tuple[SessionReport, LocalVenue, dict[str, ProductSpec]]:
    """Run ``orders`` steps; raise :class:`InvariantError` on any violation."""
    if orders < 1 or traders < 2:
        raise DomainError("orders", "too_small", "need at least one order and two traders")
    session = Session(seed, traders, emit)
    session.fund()
    while session.report.orders + session.report.cancels < orders:
        session.step()
    session.check_conservation()
    return session.report, session.venue, session.products

"""The constructors written out by hand for the dataclasses the core builds
on every input (compiled, they run natively; the generated ones would not):
each takes the same arguments as the generated one would, positionally and
by keyword, with the fields' defaults, still validates, and a frozen one
stays frozen."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from datn.domain import USD, DomainError, Order, OrderType, ProductKind, ProductSpec, Side
from datn.domain.orders import TimeInForce, Trade
from datn.ledger import AccountKey, AccountRule
from datn.ledger.ledger import _Change
from datn.protocol.clock import Hlc
from datn.protocol.holder import Lock
from datn.protocol.messages import Offer
from datn.protocol.originator import Candidate, Working
from datn.protocol.venue import OrderRequest
from datn.risk.context import MarkedPosition, RiskContext
from datn.risk.holds import Hold

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
OFFER = Offer(lock_id=5, price_ticks=5_000, quantity_lots=2, priority=Hlc(1, 2), ttl_ms=50)
ORDER = Order.create(
    7, "alice", XYZ.product_id, Side.BUY, 3, 5_000, OrderType.LIMIT, TimeInForce.IOC, "c7"
)

# A value for every field of each class, none of them its default.
SAMPLES: dict[type[Any], dict[str, Any]] = {
    Order: {
        "order_id": 9,
        "trader_id": "bob",
        "product_id": XYZ.product_id,
        "side": Side.SELL,
        "quantity_lots": 4,
        "price_ticks": 6_000,
        "order_type": OrderType.LIMIT,
        "time_in_force": TimeInForce.FOK,
        "client_order_id": "c9",
    },
    Trade: {
        "trade_id": 11,
        "product_id": XYZ.product_id,
        "price_ticks": 5_100,
        "quantity_lots": 2,
        "maker_order_id": 3,
        "taker_order_id": 4,
        "taker_side": Side.SELL,
        "executed_at_ms": 1_700_000_000_000,
    },
    OrderRequest: {
        "trader_id": "carol",
        "client_order_id": "r1",
        "product_id": XYZ.product_id,
        "side": Side.SELL,
        "quantity_lots": 5,
        "price_ticks": None,
        "time_in_force": TimeInForce.IOC,
    },
    Hold: {"asset": "USD", "amount": 12_345},
    RiskContext: {
        "order": ORDER,
        "product": XYZ,
        "available_cash_minor": 1_000,
        "available_position_lots": 8,
        "reference_price_ticks": 4_900,
        "open_order_count": 2,
        "recent_order_count": 3,
        "positions": (MarkedPosition(XYZ, -2, 5_000, 1),),
    },
    Working: {
        "order": ORDER,
        "product": XYZ,
        "hold_id": "hold:1",
        "request_id": 99,
        "limit_ticks": 5_000,
        "remaining_lots": 3,
        "filled_lots": 1,
        "round": 2,
        "asked_lots": 3,
        "awaiting": {"b"},
        "candidates": [],
        "deadline_mono_ms": 10,
        "broadcast_mono_ms": 5,
        "accepted": {("b", 1): (1, OFFER)},
        "waiting_since_mono_ms": 6,
        "resend_mono_ms": 7,
        "refused": True,
        "failed_holders": ["c"],
        "cancel_requested": True,
        "exhausted": {"d"},
        "in_doubt_lots": 1,
        "expected": {"b": 3},
    },
    Candidate: {"holder": "b", "offer": OFFER, "received_mono_ms": 12},
    Lock: {
        "lock_id": 5,
        "originator": "a",
        "order_id": 8,
        "quantity_lots": 2,
        "expires_mono_ms": 70,
        "notional": 10_000,
    },
    _Change: {
        "account": AccountKey("trader:alice", "USD"),
        "rule": AccountRule(credit_limit=0),
        "balance": 100,
        "held": 40,
    },
}


def values(obj: object) -> dict[str, Any]:
    return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda cls: cls.__name__)
def test_every_field_is_set_by_keyword_and_by_position(cls: type[Any]) -> None:
    sample = SAMPLES[cls]
    names = [field.name for field in dataclasses.fields(cls)]
    assert list(sample) == names
    by_keyword = cls(**sample)
    assert values(by_keyword) == sample
    assert values(cls(*sample.values())) == sample


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda cls: cls.__name__)
def test_a_field_left_out_takes_its_default(cls: type[Any]) -> None:
    fields = dataclasses.fields(cls)
    required = {f.name: SAMPLES[cls][f.name] for f in fields if _default(f) is _NONE}
    built = cls(**required)
    for field in fields:
        expected = required[field.name] if field.name in required else _default(field)
        assert getattr(built, field.name) == expected, field.name


def test_containers_left_out_are_new_for_each_working_order() -> None:
    first = Working(ORDER, XYZ, None, 1, 5_000, 3)
    second = Working(ORDER, XYZ, None, 2, 5_000, 3)
    first.awaiting.add("b")
    first.accepted[("b", 1)] = (1, OFFER)
    assert second.awaiting == set() and second.accepted == {}


@pytest.mark.parametrize(
    "cls",
    [c for c in SAMPLES if dataclasses.fields(c) and c.__dataclass_params__.frozen],  # type: ignore[attr-defined]
    ids=lambda cls: cls.__name__,
)
def test_a_frozen_one_stays_frozen(cls: type[Any]) -> None:
    built = cls(**SAMPLES[cls])
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, name, SAMPLES[cls][name])
    assert built == cls(**SAMPLES[cls])
    assert hash(built) == hash(cls(**SAMPLES[cls]))


def test_the_checks_still_run() -> None:
    with pytest.raises(DomainError, match="quantity_lots"):
        Order(**{**SAMPLES[Order], "quantity_lots": 0})
    with pytest.raises(DomainError, match="client_order_id"):
        Order(**{**SAMPLES[Order], "client_order_id": "x" * 1_000})
    with pytest.raises(DomainError, match="price_ticks"):
        Trade(**{**SAMPLES[Trade], "price_ticks": 0})
    other = ProductSpec("ABC", ProductKind.SHARE, USD.code)
    with pytest.raises(DomainError, match="not the order's product"):
        RiskContext(**{**SAMPLES[RiskContext], "product": other})


_NONE = object()


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _NONE

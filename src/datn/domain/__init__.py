"""Values of the trading world: assets, products, orders, trades. Pure and frozen."""

from datn.domain.assets import USD, AssetCode, Currency
from datn.domain.errors import DomainError
from datn.domain.orders import Order, OrderId, OrderType, Side, TimeInForce, Trade, TraderId
from datn.domain.products import ProductKind, ProductSpec

__all__ = [
    "USD",
    "AssetCode",
    "Currency",
    "DomainError",
    "Order",
    "OrderId",
    "OrderType",
    "ProductKind",
    "ProductSpec",
    "Side",
    "TimeInForce",
    "Trade",
    "TraderId",
]

"""A node's configuration file (TOML) and its identity (an Ed25519 key file).

``datn node init DIR`` writes both: ``DIR/datn.toml``, every setting shown
with its default and what it does, and ``DIR/node.key``, the node's secret
key seed, readable only by its owner. :func:`load_config` reads the file
back strictly: an unknown key, a value of the wrong type or out of range is
a :class:`ConfigError` that names the key, the value and what is allowed,
and nothing starts.

The node's identity is its key: its node id is derived from the public key
(:func:`datn.wire.node_id_from_public_key`), and the secret its unguessable
ids are keyed with is derived from the seed, so the key file is the only
secret a node has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import ipaddress
import itertools
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from datn.clearing.config import ClearingConfig
from datn.clearing.quota import QuotaConfig
from datn.domain import ProductKind, ProductSpec
from datn.domain.assets import AssetCode
from datn.domain.errors import DomainError
from datn.domain.limits import MAX_LOT_SIZE, MAX_PRICE_TICKS, MAX_TICK_SIZE_MINOR
from datn.protocol.config import NodeConfig
from datn.protocol.effects import Genesis
from datn.protocol.messages import NodeId
from datn.risk import RiskConfig
from datn.wire import NodeKey, WireError

CONFIG_FILE: Final = "datn.toml"
KEY_FILE: Final = "node.key"
SEED_BYTES: Final = 32


class ConfigError(Exception):
    """A setting was refused: ``key`` names it (dotted), ``problem`` says
    what is wrong and what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ProductSetting:
    """One listed product and the price it opens at."""

    spec: ProductSpec
    reference_price_ticks: int | None


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PeerSetting:
    """A peer named in the config: its node id, and where it listens for links."""

    node_id: NodeId
    address: str | None


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything ``datn.toml`` says, checked."""

    folder: Path
    """Where the file is: relative paths in it are relative to here."""
    storage: str
    """The store's URL (see :func:`datn.store.open_store`)."""
    key_file: Path
    api: Listen
    admin: Listen
    snapshot_every: int
    core: NodeConfig
    products: tuple[ProductSetting, ...]
    rate_per_second: int = 50
    """Requests per second each trader may make, on average."""
    rate_burst: int = 100
    """Requests a trader may make at once, above the average."""
    signing_window_ms: int = 5_000
    """How far a signed request's time may be from the node's clock."""
    net: Listen = Listen("127.0.0.1", 8482)
    """Where peers dial this node to send it their messages."""
    peers: tuple[PeerSetting, ...] = ()
    resend_ms: int = 500
    """A frame a peer has not acknowledged after this long is sent again."""
    event_loop: str = "asyncio"
    """The asyncio event loop the node runs on: ``uvloop`` or ``asyncio``
    (the standard library's)."""
    max_connections: int = 10_000
    """Connections the traders' API holds at most, in all."""
    max_connections_per_address: int = 512
    """Connections the traders' API holds at most from one address (an
    IPv6 address's /64 counted as one)."""
    commit_delay_us: int = 500
    """How long a commit under load waits for more inputs to share it (see
    :mod:`datn.runtime.node`); 0: never."""
    peer_messages_per_second: int = 10_000
    """Messages one peer's frames may bring in a second (a second's worth
    saved for a burst); beyond it the node reads that peer's frames more
    slowly."""

    def genesis(self, identity: Identity) -> Genesis:
        """The node's genesis: its id from its key, its rules and products."""
        listed = frozenset(p.spec.product_id for p in self.products)
        risk = dataclasses.replace(self.core.risk, listed_products=listed)
        return Genesis(
            identity.key.node_id,
            dataclasses.replace(self.core, risk=risk),
            tuple(p.spec for p in self.products),
            (),
            identity.secret,
            tuple(
                (p.spec.product_id, p.reference_price_ticks)
                for p in self.products
                if p.reference_price_ticks is not None
            ),
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """A node's key, and the secret its unguessable ids are keyed with,
    derived from the key's seed (so the key file is the only secret)."""

    key: NodeKey
    secret: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        secret = hashlib.blake2b(seed, digest_size=32, person=b"datn-node-ids").digest()
        return cls(NodeKey(seed), secret)

    @property
    def node_id(self) -> NodeId:
        return self.key.node_id


# ------------------------------------------------------------------ reading


def load_config(path: str | os.PathLike[str]) -> NodeSettings:
    """The settings in ``path`` (a ``datn.toml``), checked; see the module docstring."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(file), f"cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            str(file), f"is not UTF-8 text (byte {error.start}: {error.reason})"
        ) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), f"is not valid TOML: {error}") from None
    return settings_from(table, file.resolve().parent)


_TOP: Final = {"node", "api", "net", "peers", "products", "core"}


def settings_from(table: Mapping[str, Any], folder: Path) -> NodeSettings:
    _known(table, _TOP, "")
    node = _table(table, "node")
    _known(node, {"storage", "key_file", "snapshot_every", "event_loop", "commit_delay_us"}, "node")
    api = _table(table, "api")
    _known(
        api,
        {
            "listen",
            "admin_listen",
            "rate_per_second",
            "rate_burst",
            "signing_window_ms",
            "max_connections",
            "max_connections_per_address",
        },
        "api",
    )
    storage = _text(node, "storage", "node", f"sqlite:///{folder / 'node.sqlite3'}")
    _check_storage(storage)
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        relative = storage.removeprefix("sqlite:///")
        if relative and not Path(relative).is_absolute():
            storage = f"sqlite:///{folder / relative}"
    key_file = folder / _text(node, "key_file", "node", KEY_FILE)
    snapshot_every = _integer(node, "snapshot_every", "node", 50_000, 100, 100_000_000)
    products = tuple(
        _product(entry, f"products[{index}]")
        for index, entry in enumerate(_array(table, "products"))
    )
    if not products:
        raise ConfigError("products", "list at least one product ([[products]])")
    symbols = [p.spec.symbol for p in products]
    if len(set(symbols)) != len(symbols):
        raise ConfigError("products", f"a symbol is listed twice: {symbols}")
    currencies = {p.spec.quote_currency for p in products}
    for index, product in enumerate(products):
        if product.spec.symbol in currencies:
            # Operators and traders name assets by symbol or currency code.
            raise ConfigError(
                f"products[{index}].symbol",
                f"{product.spec.symbol!r} is a quote currency here; a product needs a name of"
                " its own",
            )
    core = _dataclass(NodeConfig, _table(table, "core"), "core", {"risk": RiskConfig(None)})
    _check_bond_currency(core.clearing.bond_asset, products)
    net = _table(table, "net")
    _known(net, {"listen", "resend_ms", "peer_messages_per_second"}, "net")
    peers = tuple(
        _peer(entry, f"peers[{index}]") for index, entry in enumerate(_array(table, "peers"))
    )
    ids = [p.node_id for p in peers]
    if len(set(ids)) != len(ids):
        raise ConfigError("peers", "a node id is listed twice")
    listens = (
        _listen(api, "listen", "127.0.0.1:8480"),
        _listen(api, "admin_listen", "127.0.0.1:8481"),
        _listen(net, "listen", "127.0.0.1:8482", "net"),
    )
    _distinct_listens(listens)
    return NodeSettings(
        folder,
        storage,
        key_file,
        listens[0],
        listens[1],
        snapshot_every,
        core,
        products,
        _integer(api, "rate_per_second", "api", 50, 1, 1_000_000),
        _integer(api, "rate_burst", "api", 100, 1, 1_000_000),
        _integer(api, "signing_window_ms", "api", 5_000, 1, 60_000),
        listens[2],
        peers,
        _integer(net, "resend_ms", "net", 500, 10, 60_000),
        _event_loop(node),
        _integer(api, "max_connections", "api", 10_000, 1, 1_000_000),
        _integer(api, "max_connections_per_address", "api", 512, 1, 1_000_000),
        _integer(node, "commit_delay_us", "node", 500, 0, 10_000),
        _integer(net, "peer_messages_per_second", "net", 10_000, 100, 1_000_000),
    )


EVENT_LOOPS: Final = ("uvloop", "asyncio")


STORAGE_SCHEMES: Final = ("sqlite:///", "postgresql://", "postgres://")


def _check_storage(url: str) -> None:
    """A storage URL the node can open (``memory:`` is for tests, and keeps
    nothing): refused here, naming the key, rather than when the node
    starts."""
    if not url.startswith(STORAGE_SCHEMES) or url in STORAGE_SCHEMES:
        raise ConfigError(
            "node.storage",
            f"{url!r} is not a storage URL: sqlite:///FILE (relative to the node's folder;"
            " sqlite:////FILE is absolute) or postgresql://USER@HOST:PORT/DB[?schema=NAME]",
        )
    if not url.startswith("sqlite:///"):
        try:
            urlsplit(url).port  # noqa: B018 - read for the check: a port out of range raises
        except ValueError as error:
            raise ConfigError("node.storage", f"{url!r} cannot be read as a URL: {error}") from None


def without_password(url: str) -> str:
    """``url`` with the password it may carry shown as ``***``, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def uvloop_installed() -> bool:
    """Whether uvloop can be imported here (it runs on Linux and macOS)."""
    return importlib.util.find_spec("uvloop") is not None


def _event_loop(node: Mapping[str, Any]) -> str:
    """``node.event_loop``: asyncio's own unless the config asks for uvloop."""
    loop = _text(node, "event_loop", "node", "asyncio")
    if loop not in EVENT_LOOPS:
        raise ConfigError(
            "node.event_loop", f"must be one of {', '.join(EVENT_LOOPS)}, not {loop!r}"
        )
    if loop == "uvloop" and not uvloop_installed():
        raise ConfigError(
            "node.event_loop", 'is "uvloop", which is not installed here: use "asyncio"'
        )
    return loop


def _peer(entry: Mapping[str, Any], where: str) -> PeerSetting:
    _known(entry, {"node_id", "address"}, where)
    node_id = entry.get("node_id")
    if not isinstance(node_id, str) or re.fullmatch(r"[0-9a-f]{64}", node_id) is None:
        raise ConfigError(
            f"{where}.node_id", f"must be a node id (64 lowercase hex digits), not {node_id!r}"
        )
    address = entry.get("address")
    if address is not None:
        address = check_address(address, f"{where}.address")
    return PeerSetting(NodeId(node_id), address)


_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME: Final = rf"{_LABEL}(?:\.{_LABEL})*"
"""A host name or IPv4 address: dot-separated labels of ASCII letters,
digits and inner hyphens (RFC 1123)."""


def check_address(value: object, key: str) -> str:
    """A peer's link address: ``ws://HOST:PORT`` (or ``wss://``)."""
    match = (
        re.fullmatch(rf"wss?://(\[[0-9a-fA-F:.]+\]|{_HOST_NAME}):([0-9]{{1,5}})", value)
        if isinstance(value, str)
        else None
    )
    if match is not None and match.group(1).startswith("["):
        try:
            ipaddress.IPv6Address(match.group(1)[1:-1])
        except ValueError:
            match = None
    if match is None or not 0 < int(match.group(2)) <= 65_535:
        raise ConfigError(key, f"must be ws://HOST:PORT with a port from 1 to 65535, not {value!r}")
    return str(value)


def _known(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                _join(where, key),
                f"is not a setting here; the settings are: {', '.join(sorted(allowed))}",
            )


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _table(table: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table ([{key}]), not {value!r}")
    return value


def _array(table: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(key, f"must be an array of tables ([[{key}]]), not {value!r}")
    return value


def _text(table: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(_join(where, key), f"must be a non-empty string, not {value!r}")
    if not value.isprintable():
        raise ConfigError(
            _join(where, key), f"must be printable text (no control characters), not {value!r}"
        )
    return value


def _integer(
    table: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int
) -> int:
    value = table.get(key, default)
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(
            _join(where, key), f"must be a whole number from {low:,} to {high:,}, not {value!r}"
        )
    return value


def _listen(table: Mapping[str, Any], key: str, default: str, where: str = "api") -> Listen:
    value = _text(table, key, where, default)
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        literal = _ip_literal(host) is not None and ":" in host
    else:
        literal = _ip_literal(host) is not None or (
            len(host) <= 253 and re.fullmatch(_HOST_NAME, host) is not None
        )
    if not literal or re.fullmatch(r"[0-9]{1,5}", port) is None or not 0 <= int(port) <= 65_535:
        raise ConfigError(
            f"{where}.{key}",
            "must be HOST:PORT (an IP address, [IPv6] or a host name, and a port from 0 to"
            f" 65535), not {value!r}",
        )
    return Listen(host, int(port))


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


_LISTEN_KEYS: Final = ("api.listen", "api.admin_listen", "net.listen")


def _distinct_listens(listens: tuple[Listen, Listen, Listen]) -> None:
    """The three servers each at an address of their own (port 0: any free one)."""
    for (key, listen), (other_key, other) in itertools.combinations(
        zip(_LISTEN_KEYS, listens, strict=True), 2
    ):
        if listen.port and (listen.host, listen.port) == (other.host, other.port):
            raise ConfigError(
                other_key, f"{str(other)!r} is where {key} listens; each needs its own port"
            )


def _product(entry: Mapping[str, Any], where: str) -> ProductSetting:
    _known(
        entry,
        {
            "symbol",
            "kind",
            "quote_currency",
            "tick_size_minor",
            "lot_size",
            "reference_price_ticks",
        },
        where,
    )
    kinds = [k.value for k in ProductKind]
    kind = entry.get("kind", "share")
    if kind not in kinds:
        raise ConfigError(f"{where}.kind", f"must be one of {', '.join(kinds)}, not {kind!r}")
    reference = entry.get("reference_price_ticks")
    if reference is not None:
        # The core's own bound: a reference above it would fail the first
        # order's risk checks, and the node with it.
        reference = _integer(entry, "reference_price_ticks", where, 0, 1, MAX_PRICE_TICKS)
    try:
        spec = ProductSpec(
            _text(entry, "symbol", where, ""),
            ProductKind(kind),
            AssetCode(_text(entry, "quote_currency", where, "USD")),
            _integer(entry, "tick_size_minor", where, 1, 1, MAX_TICK_SIZE_MINOR),
            _integer(entry, "lot_size", where, 1, 1, MAX_LOT_SIZE),
        )
    except DomainError as error:
        raise ConfigError(
            f"{where}.{error.field}", f"{error.message}, not {entry.get(error.field)!r}"
        ) from None
    return ProductSetting(spec, reference)


_T = typing.TypeVar("_T")


def _dataclass(
    cls: type[_T], table: Mapping[str, Any], where: str, defaults: Mapping[str, Any] | None = None
) -> _T:
    """``cls`` built from ``table``, every key checked against its fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    settable = {name for name, f in fields.items() if f.init}
    if where == "core.risk":
        settable.discard("listed_products")  # from [[products]]
    _known(table, settable, where)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = dict(defaults or {})
    for name, value in table.items():
        kind = hints[name]
        key = _join(where, name)
        if kind in _NESTED:
            if not isinstance(value, dict):
                raise ConfigError(key, f"must be a table ([{key}]), not {value!r}")
            values[name] = _dataclass(kind, value, key)
            continue
        try:
            values[name] = msgspec.convert(value, kind, strict=True)
        except msgspec.ValidationError:
            raise ConfigError(key, f"must be {_describe(kind)}, not {value!r}") from None
    try:
        return cls(**values)
    except DomainError as error:
        raise ConfigError(
            _join(where, error.field), f"{error.message}, not {values.get(error.field)!r}"
        ) from None
    except (ValueError, TypeError) as error:
        raise ConfigError(where, str(error)) from None


_NESTED: Final[set[object]] = {RiskConfig, ClearingConfig, QuotaConfig}


def _describe(kind: object) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a whole number"
    if isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind):
        inner = [k for k in typing.get_args(kind) if k is not type(None)]
        return f"{_describe(inner[0])} (or left out)"
    return getattr(kind, "__name__", str(kind))


# ------------------------------------------------------------------ identity


def write_key(path: Path) -> Identity:
    """A new key seed in ``path``, created readable and writable by its owner
    only; refuses to overwrite one."""
    seed = os.urandom(SEED_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(str(path), "a key exists already; a node keeps its key") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(seed.hex().encode() + b"\n")
    return Identity.from_seed(seed)


def check_peers(settings: NodeSettings, identity: Identity) -> None:
    """Refuse a config that lists the node itself among its peers (its key's id)."""
    for index, peer in enumerate(settings.peers):
        if peer.node_id == identity.node_id:
            raise ConfigError(
                f"peers[{index}].node_id",
                f"{peer.node_id} is this node's own id (its key's): list the other nodes",
            )


def read_key(path: Path) -> Identity:
    """The node's key, refused if others may read it or it is damaged."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), f"the key file cannot be read: {error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            str(path), f"the key file is readable by others (mode {stat.filemode(mode)}): chmod 600"
        )
    try:
        seed = bytes.fromhex(text)
        if len(seed) != SEED_BYTES:
            raise ValueError
        return Identity.from_seed(seed)
    except (ValueError, WireError):
        raise ConfigError(
            str(path), f"the key file must hold {SEED_BYTES} bytes in hexadecimal"
        ) from None


# ------------------------------------------------------------------ writing

_HEADER: Final = """\
# datn node configuration, written by `datn node init`.
#
# Every key is optional unless marked; a key this version does not know is
# an error, as is a value of the wrong type or out of range: the node names
# the key, the value and what is allowed, and does not start.
# Relative paths are relative to this file's folder.

[node]
# Where the journal, snapshots and history live: sqlite:///FILE (the
# embedded default: one file, WAL, synchronous=FULL) or
# postgresql://USER@HOST:PORT/DB?schema=NAME (see the README).
storage = "sqlite:///node.sqlite3"
# The node's Ed25519 key seed, readable by its owner only. The node id is
# derived from it: keep it, and keep it secret.
key_file = "node.key"
# Take a snapshot after this many journal entries, so a restart replays
# at most this many.
snapshot_every = 50000
# The event loop: "asyncio" (the standard library's) or "uvloop" (libuv,
# on Linux and macOS). uvloop takes about a quarter more orders a second
# over HTTP; asyncio's keeps the WebSocket's tail latency under load lower
# (see the README's intake figures).
event_loop = "asyncio"
# Under load (the latest commits held three inputs or more on average), a
# commit waits up to this long (microseconds, at most 10000) for more
# inputs to share its fsync, unless 16 are pending already; a commit of one
# input (a lone order, a lone step of a trade across nodes) never waits.
# Fewer, larger commits leave the node less busy at the same rate. 0: never.
commit_delay_us = 500

[api]
# Traders' REST and WebSocket API.
listen = "127.0.0.1:8480"
# The operator's API: a separate credential, and by default loopback only.
# It also serves Prometheus metrics at /metrics, without the credential.
admin_listen = "127.0.0.1:8481"
# Each trader may make rate_per_second requests a second on average and
# rate_burst at once; beyond that the API answers 429 with Retry-After,
# and other traders are served as before.
rate_per_second = 50
rate_burst = 100
# A signed request's time may be at most this far from the node's clock
# (at most 60000); a request seen before within it is refused as a replay.
signing_window_ms = 5000
# Connections the traders' API holds at most, in all and from one address
# (an IPv6 address's /64 counts as one); one more is dropped as it is
# accepted. Every connection is an open file: the node raises its limit on
# open files as far as the system allows, and takes fewer connections (with
# a warning in the log) if that limit leaves less room.
max_connections = 10000
max_connections_per_address = 512

[net]
# Where peers dial this node to send it their messages (WebSocket links,
# signed frames). Open it to the peers' hosts only.
listen = "127.0.0.1:8482"
# A frame a peer has not acknowledged after this long is sent again.
resend_ms = 500
# Messages one peer may bring in a second (a second's worth saved for a
# burst): beyond it, that peer's frames are read more slowly, so a peer
# that floods cannot take the node's core, disk or memory from its traders
# and other peers. Each message a peer sends is journaled.
peer_messages_per_second = 10000

# The peers this node links with: one [[peers]] table each. The operator
# can also add peers to a running node (`datn admin add-peer`). Each peer
# must list this node too. Example:
# [[peers]]
# node_id = "64 hex digits: the peer's `datn node init` printed it"
# address = "ws://peer.example.com:8482"

# What the node lists: one [[products]] table each (at least one).
# kind: share, bond, option, future, fund or other; prices are in ticks of
# tick_size_minor minor units of quote_currency; quantities in lots. Every
# product is quoted in the currency bonds are posted in
# (core.clearing.bond_asset): exposure to a peer is measured in it.
[[products]]
symbol = "XYZ"
kind = "share"
quote_currency = "USD"
tick_size_minor = 1
lot_size = 1
# The price judged against before the node has heard any trade.
reference_price_ticks = 5000
"""


def _check_bond_currency(bond_asset: str, products: tuple[ProductSetting, ...]) -> None:
    """Every product is quoted in the bond's currency. Exposure to a peer is
    its cash in that currency and its lots of the products quoted in it, at
    their marks: a product quoted in another would trade outside every
    peer's bond, and a bond asset no product is quoted in caps nothing."""
    quoted = [p.spec.quote_currency for p in products]
    if bond_asset not in quoted:
        raise ConfigError(
            "core.clearing.bond_asset",
            f"is {bond_asset!r}, which no listed product is quoted in; exposure to a peer is"
            f" measured in the bond's currency, so it is the products' quote currency"
            f" ({', '.join(sorted(set(quoted)))})",
        )
    for index, currency in enumerate(quoted):
        if currency != bond_asset:
            raise ConfigError(
                f"products[{index}].quote_currency",
                f"is {currency!r}, but bonds are posted in {bond_asset!r}"
                " (core.clearing.bond_asset): a product quoted in another currency would trade"
                " outside every peer's bond, so each is quoted in the bond's currency",
            )


def config_template() -> str:
    """The commented ``datn.toml`` that ``datn node init`` writes: the
    settings above, then every core setting at its default, commented out."""
    lines = [_HEADER]
    for where, cls in (
        ("core", NodeConfig),
        ("core.risk", RiskConfig),
        ("core.clearing", ClearingConfig),
        ("core.clearing.quota", QuotaConfig),
    ):
        lines.append(f"\n[{where}]")
        notes = _field_notes(cls)
        for f in dataclasses.fields(cls):
            if not f.init or f.name in ("risk", "clearing", "quota", "listed_products"):
                continue
            for note in notes.get(f.name, []):
                lines.append(f"# {note}")
            default = f.default if f.default is not dataclasses.MISSING else None
            lines.append(f"# {f.name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if value is None:
        return "(none: leave out)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_notes(cls: type) -> dict[str, list[str]]:
    """Each field's docstring (the string under it in the class body), as
    comment lines; none where the source cannot be read."""
    import ast  # noqa: PLC0415 - only when writing a template
    import inspect  # noqa: PLC0415
    import textwrap  # noqa: PLC0415

    module = inspect.getmodule(cls)
    source_file = Path(getattr(module, "__file__", "") or "")
    source_file = source_file.with_name(source_file.name.split(".")[0] + ".py")
    try:
        tree = ast.parse(source_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    notes: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            body = node.body
            for statement, following in itertools.pairwise(body):
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    text = " ".join(following.value.value.split())
                    notes[statement.target.id] = textwrap.wrap(text, 74)
    return notes


def init_folder(folder: Path) -> tuple[Path, Identity]:
    """Write ``folder/datn.toml`` and ``folder/node.key``; refuses a folder
    that has either already."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / CONFIG_FILE
    if config.exists():
        raise ConfigError(str(config), "exists already; init writes a new node's folder")
    identity = write_key(folder / KEY_FILE)
    config.write_text(config_template(), encoding="utf-8")
    return config, identity

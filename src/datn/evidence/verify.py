"""The verifier: check an evidence bundle trusting nothing but its bytes, and
recompute from its signed frames what the two nodes owe each other.

Reading comes first: every line must be canonical, chained to the line above
and closed by the exporter's seal, and every record's frame must carry a valid
signature of its sender, so that an altered byte is reported on the line it is
in. Only the frames that pass are analysed.

What verify recomputes: a trade counts when the originator's broadcast asked
for its product and side, the holder offered the lock, the originator signed
an acceptance of it and the holder signed a confirmation of it, on terms that
agree (price, quantity, limit). The holder is the confirmation's sender, the
originator its receiver. From the trades of the period it derives what each
side owes the other per asset (cash from the product's lot and tick size), and
it checks every settlement statement against the trades it lists: its net,
its hash, who proposed and who answered, and that no trade is settled twice.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from datn.clearing.settlement import Deltas, net_of, statement_hash
from datn.domain.errors import DomainError
from datn.domain.orders import Side
from datn.domain.products import ProductKind, ProductSpec
from datn.evidence.bundle import FORMAT, VERSION, Party, canonical, chain_next, chain_start, without
from datn.protocol.messages import (
    Acceptance,
    BondAnswer,
    BondRequest,
    Confirmation,
    NodeId,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Statement,
    StatementAnswer,
    StatementProposal,
)
from datn.wire.errors import ProtocolError
from datn.wire.frame import Envelope, open_frame, read_header
from datn.wire.keys import Purpose, check_node_id, verify
from datn.wire.limits import MAX_INT64, MAX_NODE_NAME_LENGTH
from datn.wire.schema import NODE_NAME_PATTERN

_HEADER_FIELDS: Final = frozenset(
    {"kind", "format", "version", "exporter", "nodes", "period", "products", "chain"}
)
_RECORD_FIELDS: Final = frozenset({"kind", "n", "time_ms", "sender", "receiver", "frame", "chain"})
_SEAL_FIELDS: Final = frozenset({"kind", "records", "chain", "signature"})
_SPEC_FIELDS: Final = frozenset(
    {"attributes", "kind", "lot_size", "quote_currency", "symbol", "tick_size_minor"}
)
_HEX_64: Final = re.compile(r"[0-9a-f]{64}")
_HEX_128: Final = re.compile(r"[0-9a-f]{128}")
_NODE_NAME: Final = re.compile(NODE_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong, and where: ``header``, ``record N``, ``seal`` or ``bundle``."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(frozen=True, slots=True)
class Trade:
    """A trade both sides signed. ``side`` is the originator's; ``in_period``
    is False for a trade brought in as context (a statement lists it)."""

    record: int
    lock_id: int
    holder: str
    originator: str
    product_id: str
    side: Side
    price_ticks: int
    quantity_lots: int
    currency: str
    notional_minor: int
    in_period: bool

    def debts(self) -> tuple[tuple[str, str, str, int], ...]:
        """(debtor, creditor, asset, amount): the buyer owes the cash, the
        seller the lots."""
        buyer, seller = (
            (self.originator, self.holder)
            if self.side is Side.BUY
            else (self.holder, self.originator)
        )
        return (
            (buyer, seller, self.currency, self.notional_minor),
            (seller, buyer, self.product_id, self.quantity_lots),
        )


@dataclass
class Verification:
    """What :func:`verify_bundle` found. Amounts are by node name and asset;
    ``net`` and ``unsettled`` are what the first node (``nodes[0]``, the lower
    name) owes the second, as in a settlement statement."""

    problems: list[Problem] = field(default_factory=list)
    nodes: tuple[Party, Party] | None = None
    exporter: str = ""
    from_ms: int = 0
    to_ms: int | None = None
    records: int = 0
    frames_verified: int = 0
    products: dict[str, ProductSpec] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    owed: dict[str, dict[str, int]] = field(default_factory=dict)
    """Debtor name -> asset -> what it owes the other node for the period's trades."""
    net: dict[str, int] = field(default_factory=dict)
    unsettled: dict[str, int] = field(default_factory=dict)
    """The net of the period's trades that no agreed statement in the bundle settles."""
    statements: int = 0
    agreed: int = 0
    bonds: dict[str, dict[str, int]] = field(default_factory=dict)
    """Poster name -> asset -> what it posted with the other node, net of withdrawals."""
    messages: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))


class _LineError(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True, slots=True)
class _Frame:
    index: int
    time_ms: int
    envelopes: tuple[Envelope, ...]


def verify_bundle(data: bytes) -> Verification:
    """Check a bundle, trusting nothing but its bytes. Never raises for a bad
    bundle: every failure is a :class:`Problem` naming its line."""
    result = Verification()
    terminated = data.endswith(b"\n")
    lines = (data[:-1] if terminated else data).split(b"\n")
    if len(lines) < 2:
        result.problem("bundle", "too short: a bundle has a header and a seal at least")
        return result
    header = _read_header(lines[0], result)
    if header is None:
        return result
    result.records = len(lines) - 2
    frames, chain = _read_records(lines[1:-1], header, result)
    _read_seal(lines[-1], header, chain, len(lines) - 2, result)
    if not terminated:
        result.problem("seal", "the bundle does not end with a newline")
    _Analysis(header, result).run(frames)
    return result


def _read_header(raw: bytes, result: Verification) -> _HeaderDoc | None:
    try:
        doc = _parse_line(raw, _HEADER_FIELDS)
        stored = _hex(doc, "chain", _HEX_64)
        if chain_start(without(doc, "chain")) != stored:
            raise _LineError("does not match its digest: altered after export")
        header = _header_of(doc)
    except _LineError as bad:
        result.problem("header", bad.what)
        return None
    result.nodes = header.nodes
    result.exporter = header.name_of[header.exporter]
    result.from_ms, result.to_ms = header.from_ms, header.to_ms
    for pid, spec in header.claimed_products:
        if spec.product_id == pid:
            result.products[pid] = spec
        else:
            result.problem(
                "header", f"product {pid}: its spec hashes to {spec.product_id}, not to its id"
            )
    return header


@dataclass(frozen=True, slots=True)
class _HeaderDoc:
    exporter: NodeId
    nodes: tuple[Party, Party]
    from_ms: int
    to_ms: int | None
    claimed_products: tuple[tuple[str, ProductSpec], ...]
    chain: str

    @property
    def name_of(self) -> dict[NodeId, str]:
        return {p.node_id: p.name for p in self.nodes}


def _header_of(doc: dict[str, object]) -> _HeaderDoc:
    if doc["kind"] != "header" or doc["format"] != FORMAT:
        raise _LineError(f"not a {FORMAT} header")
    if type(doc["version"]) is not int or doc["version"] != VERSION:
        raise _LineError(f"format version {doc['version']!r} is not supported (only {VERSION})")
    nodes_doc = doc["nodes"]
    if not isinstance(nodes_doc, list) or len(nodes_doc) != 2:
        raise _LineError("nodes: must name exactly two nodes")
    first, second = (_party_of(p) for p in nodes_doc)
    if first.node_id == second.node_id or not first.name < second.name:
        raise _LineError("nodes: two different nodes, sorted by name")
    exporter = _node_id(doc, "exporter")
    if exporter not in (first.node_id, second.node_id):
        raise _LineError("exporter: must be one of the two nodes")
    period = doc["period"]
    if not isinstance(period, dict) or set(period) != {"from_ms", "to_ms"}:
        raise _LineError("period: must have from_ms and to_ms")
    from_ms = _int(period, "from_ms")
    to_ms = None if period["to_ms"] is None else _int(period, "to_ms")
    if to_ms is not None and to_ms <= from_ms:
        raise _LineError("period: to_ms must be after from_ms")
    products_doc = doc["products"]
    if not isinstance(products_doc, list):
        raise _LineError("products: must be a list")
    products = tuple(_product_of(p) for p in products_doc)
    ids = [pid for pid, _ in products]
    if ids != sorted(set(ids)):
        raise _LineError("products: ids must be unique and sorted")
    return _HeaderDoc(
        exporter, (first, second), from_ms, to_ms, products, _hex(doc, "chain", _HEX_64)
    )


def _party_of(doc: object) -> Party:
    if not isinstance(doc, dict) or set(doc) != {"id", "name"}:
        raise _LineError("nodes: each node has an id and a name")
    name = doc["name"]
    if (
        not isinstance(name, str)
        or len(name) > MAX_NODE_NAME_LENGTH
        or _NODE_NAME.match(name) is None
    ):
        raise _LineError(f"nodes: {name!r} is not a node name")
    return Party(_node_id(doc, "id"), name)


def _product_of(doc: object) -> tuple[str, ProductSpec]:
    if not isinstance(doc, dict) or set(doc) != {"id", "spec"}:
        raise _LineError("products: each product has an id and a spec")
    pid, spec = doc["id"], doc["spec"]
    if not isinstance(pid, str) or not isinstance(spec, dict) or set(spec) != _SPEC_FIELDS:
        raise _LineError(f"products: {pid!r} has no well-formed spec")
    # Any: ProductSpec checks the type of every field it is given.
    fields: dict[str, Any] = spec
    try:
        attributes = fields["attributes"]
        if not isinstance(attributes, dict):
            raise DomainError("attributes", "bad_attributes", "must be an object")
        product = ProductSpec(
            fields["symbol"],
            ProductKind.parse(fields["kind"]),
            fields["quote_currency"],
            fields["tick_size_minor"],
            fields["lot_size"],
            tuple(sorted(attributes.items())),
        )
    except DomainError as error:
        raise _LineError(f"products: {pid}: {error}") from None
    if json.loads(product.canonical_bytes()) != spec:
        raise _LineError(f"products: {pid}: the spec is not in canonical form")
    return pid, product


def _read_records(
    raws: list[bytes], header: _HeaderDoc, result: Verification
) -> tuple[list[_Frame], str | None]:
    """The records whose line and frame are intact, and the last stored chain
    (None if the last line could not be read)."""
    pair = {p.node_id for p in header.nodes}
    chain: str | None = header.chain
    last_time: int | None = None
    frames: list[_Frame] = []
    for n, raw in enumerate(raws):
        try:
            doc = _parse_line(raw, _RECORD_FIELDS)
        except _LineError as bad:
            result.problem(f"record {n}", bad.what)
            chain = None
            continue
        try:
            previous, chain = chain, None
            chain = _hex(doc, "chain", _HEX_64)
            # The frame first: its sender's signature says more than the digest.
            envelopes = _open(doc, pair)
            if previous is not None and chain_next(previous, without(doc, "chain")) != chain:
                raise _LineError("does not match its digest: altered, moved or not exported as is")
            if doc["kind"] != "record" or _int(doc, "n") != n:
                raise _LineError(f"is not record {n}")
            time_ms = _int(doc, "time_ms")
            if header.to_ms is not None and time_ms >= header.to_ms:
                raise _LineError(f"logged at {time_ms}, after the period")
            if last_time is not None and time_ms < last_time:
                raise _LineError(f"logged at {time_ms}, before the record above it")
            last_time = time_ms
            frames.append(_Frame(n, time_ms, envelopes))
        except _LineError as bad:
            result.problem(f"record {n}", bad.what)
    return frames, chain


def _open(doc: dict[str, object], pair: set[NodeId]) -> tuple[Envelope, ...]:
    """The envelopes of a record's frame, once its sender's signature checks."""
    sender, receiver = _node_id(doc, "sender"), _node_id(doc, "receiver")
    text = doc["frame"]
    if not isinstance(text, str):
        raise _LineError("frame: must be base64 text")
    try:
        frame = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or text outside ASCII
        raise _LineError("frame: not base64") from None
    if base64.b64encode(frame).decode("ascii") != text:
        raise _LineError("frame: not in canonical base64")
    try:
        framed = read_header(frame)
        if (framed.sender, framed.receiver) != (sender, receiver):
            raise _LineError("its frame is on another link than the record says")
        if {sender, receiver} != pair:
            raise _LineError(f"frame from {sender} to {receiver} is not between the bundle's nodes")
        batch = open_frame(frame)
    except ProtocolError as error:
        raise _LineError(f"frame refused: {error}") from None
    return batch.envelopes


def _read_seal(
    raw: bytes, header: _HeaderDoc, chain: str | None, count: int, result: Verification
) -> None:
    try:
        doc = _parse_line(raw, _SEAL_FIELDS)
        if doc["kind"] != "seal":
            raise _LineError("the last line is not the seal")
        if _int(doc, "records") != count:
            raise _LineError(f"counts {doc['records']} records, the bundle holds {count}")
        if chain is not None and _hex(doc, "chain", _HEX_64) != chain:
            raise _LineError("does not close the chain: records altered, added or removed")
        signature = bytes.fromhex(_hex(doc, "signature", _HEX_128))
        try:
            verify(
                header.exporter,
                Purpose.EVIDENCE,
                canonical(without(doc, "signature")),
                signature,
            )
        except ProtocolError:
            raise _LineError(f"not signed by the exporter {header.exporter}") from None
    except _LineError as bad:
        result.problem("seal", bad.what)


class _Analysis:
    """Recompute trades, obligations and statements from intact records."""

    def __init__(self, header: _HeaderDoc, result: Verification) -> None:
        self.header = header
        self.result = result
        self.name = header.name_of
        self.low, self.high = header.nodes
        self.seen: dict[tuple[NodeId, int], tuple[int, Envelope]] = {}
        self.broadcasts: dict[tuple[NodeId, int, int], OrderBroadcast] = {}
        self.offers: dict[tuple[NodeId, int], tuple[int, PotentialTrades, Offer]] = {}
        self.accepted: dict[tuple[NodeId, int], set[int]] = {}
        self.confirmations: dict[tuple[NodeId, int], tuple[int, Confirmation]] = {}
        self.refusals: dict[tuple[NodeId, int], int] = {}
        self.confirmed: list[tuple[_Frame, NodeId, NodeId, Confirmation]] = []
        self.proposals: list[tuple[int, NodeId, NodeId, Statement]] = []
        self.answers: list[tuple[int, NodeId, NodeId, StatementAnswer]] = []
        self.bond_requests: dict[tuple[NodeId, int], BondRequest] = {}
        self.bond_answers: list[tuple[NodeId, NodeId, BondAnswer]] = []

    def run(self, frames: list[_Frame]) -> None:
        for frame in frames:
            self.result.frames_verified += 1
            for envelope in frame.envelopes:
                self._collect(frame, envelope)
        trades = self._trades()
        self._obligations(trades)
        self._statements(trades)
        self._bonds()

    # --------------------------------------------------------------- collect

    def _collect(self, frame: _Frame, e: Envelope) -> None:
        where = f"record {frame.index}"
        earlier = self.seen.get((e.sender, e.seq))
        if earlier is not None:
            if earlier[1] != e:
                self.result.problem(
                    where,
                    f"{self.name[e.sender]} numbered two different messages {e.seq} "
                    f"(see record {earlier[0]})",
                )
            return
        self.seen[(e.sender, e.seq)] = (frame.index, e)
        m, s, r = e.message, e.sender, e.receiver
        self.result.messages[type(m).__name__] += 1
        if isinstance(m, OrderBroadcast):
            self.broadcasts[(s, m.request_id, m.round)] = m
        elif isinstance(m, PotentialTrades):
            for offer in m.offers:
                before = self.offers.get((s, offer.lock_id))
                if before is not None and before[2] != offer:
                    self.result.problem(
                        where,
                        f"{self.name[s]} offered lock {offer.lock_id} again on other terms "
                        f"(see record {before[0]})",
                    )
                    continue
                self.offers[(s, offer.lock_id)] = (frame.index, m, offer)
        elif isinstance(m, Acceptance):
            self.accepted.setdefault((r, m.lock_id), set()).add(m.quantity_lots)
        elif isinstance(m, Confirmation):
            before_confirmation = self.confirmations.get((s, m.lock_id))
            if before_confirmation is not None:
                if before_confirmation[1] != m:
                    self.result.problem(
                        where,
                        f"{self.name[s]} confirmed lock {m.lock_id} again on other terms "
                        f"(see record {before_confirmation[0]})",
                    )
                return
            self.confirmations[(s, m.lock_id)] = (frame.index, m)
            self.confirmed.append((frame, s, r, m))
        elif isinstance(m, Refusal):
            self.refusals.setdefault((s, m.lock_id), frame.index)
        elif isinstance(m, StatementProposal):
            self.proposals.append((frame.index, s, r, m.statement))
        elif isinstance(m, StatementAnswer):
            self.answers.append((frame.index, s, r, m))
        elif isinstance(m, BondRequest):
            self.bond_requests.setdefault((s, m.bond_id), m)
        elif isinstance(m, BondAnswer):
            self.bond_answers.append((s, r, m))

    # ---------------------------------------------------------------- trades

    def _trades(self) -> dict[int, Trade]:
        """Lock id -> every trade that both sides signed; the rest are problems."""
        trades: dict[int, Trade] = {}
        for frame, holder, originator, m in self.confirmed:
            faults = list(self._trade_faults(holder, originator, m))
            if faults:
                for fault in faults:
                    self.result.problem(f"record {frame.index}", f"lock {m.lock_id}: {fault}")
                continue
            other = trades.get(m.lock_id)
            if other is not None:
                # Statements name a pair's trades by lock id alone.
                self.result.problem(
                    f"record {frame.index}",
                    f"lock {m.lock_id}: {self.name[holder]} confirmed a trade under the id of "
                    f"{other.holder}'s lock (record {other.record}): a statement could not say "
                    "which of the two it settles",
                )
                continue
            spec = self.result.products[m.product_id]
            trade = Trade(
                frame.index,
                m.lock_id,
                self.name[holder],
                self.name[originator],
                m.product_id,
                m.side,
                m.price_ticks,
                m.quantity_lots,
                spec.quote_currency,
                spec.notional_minor(m.quantity_lots, m.price_ticks),
                frame.time_ms >= self.header.from_ms,
            )
            trades[m.lock_id] = trade
            self.result.trades.append(trade)
        return trades

    def _trade_faults(self, holder: NodeId, originator: NodeId, m: Confirmation) -> Iterator[str]:
        h, o = self.name[holder], self.name[originator]
        if m.product_id not in self.result.products:
            yield f"product {m.product_id} has no spec in the header"
        refused = self.refusals.get((holder, m.lock_id))
        if refused is not None:
            yield f"{h} both confirmed and refused it (refusal in record {refused})"
        accepted = self.accepted.get((holder, m.lock_id))
        if accepted is None:
            yield f"confirmed by {h}, but no acceptance signed by {o} is in the bundle"
        elif m.quantity_lots not in accepted:
            yield f"{h} confirmed {m.quantity_lots} lots, {o} accepted {sorted(accepted)}"
        offered = self.offers.get((holder, m.lock_id))
        if offered is None:
            yield f"confirmed by {h}, but no offer of it signed by {h} is in the bundle"
            return
        _, answer, offer = offered
        if m.price_ticks != offer.price_ticks:
            yield f"confirmed at {m.price_ticks} ticks, offered at {offer.price_ticks}"
        if m.quantity_lots > offer.quantity_lots:
            yield f"confirmed {m.quantity_lots} lots, offered {offer.quantity_lots}"
        broadcast = self.broadcasts.get((originator, answer.request_id, answer.round))
        if broadcast is None:
            yield f"no broadcast signed by {o} asked for the offer (request {answer.request_id})"
            return
        if (broadcast.product_id, broadcast.side) != (m.product_id, m.side):
            yield (
                f"confirmed {m.side.value} {m.product_id}, but {o} broadcast "
                f"{broadcast.side.value} {broadcast.product_id}"
            )
        if m.quantity_lots > broadcast.quantity_lots:
            yield f"confirmed {m.quantity_lots} lots, {o} asked for {broadcast.quantity_lots}"
        limit = broadcast.limit_price_ticks
        if limit is not None and (
            m.price_ticks > limit if m.side is Side.BUY else m.price_ticks < limit
        ):
            yield f"price {m.price_ticks} ticks is beyond {o}'s limit of {limit}"

    # ----------------------------------------------------------- obligations

    def _obligations(self, trades: Mapping[int, Trade]) -> None:
        owed: dict[str, Counter[str]] = {self.low.name: Counter(), self.high.name: Counter()}
        for trade in trades.values():
            if trade.in_period:
                for debtor, _, asset, amount in trade.debts():
                    owed[debtor][asset] += amount
        self.result.owed = {name: dict(sorted(amounts.items())) for name, amounts in owed.items()}
        self.result.net = dict(net_of(self._low_owes(t) for t in trades.values() if t.in_period))

    def _low_owes(self, trade: Trade) -> Deltas:
        """What the lower name owes the higher for one trade, per asset."""
        return tuple(
            sorted(
                (asset, amount if debtor == self.low.name else -amount)
                for debtor, _, asset, amount in trade.debts()
            )
        )

    # ------------------------------------------------------------ statements

    def _statements(self, trades: Mapping[int, Trade]) -> None:
        low, high = self.low, self.high
        problem = self.result.problem
        by_cycle: dict[int, tuple[int, Statement, str]] = {}
        for index, sender, receiver, st in self.proposals:
            where = f"record {index}"
            self.result.statements += 1
            digest = statement_hash(st)
            if (st.low, st.high) != (low.name, high.name):
                problem(where, f"statement of {st.low} and {st.high}, not of this pair")
                continue
            if (sender, receiver) != (low.node_id, high.node_id):
                problem(where, f"statement of cycle {st.cycle} proposed by {high.name}")
            before = by_cycle.get(st.cycle)
            if before is not None and before[1] != st:
                problem(
                    where,
                    f"a second, different statement for cycle {st.cycle} (see record {before[0]})",
                )
                continue
            by_cycle[st.cycle] = (index, st, digest)
            missing = [lock for lock in st.lock_ids if lock not in trades]
            if missing:
                problem(
                    where,
                    f"statement of cycle {st.cycle} lists locks with no verified trade "
                    f"in the bundle: {missing[:5]}",
                )
                continue
            recomputed = net_of(self._low_owes(trades[lock]) for lock in st.lock_ids)
            if recomputed != st.net:
                problem(
                    where,
                    f"statement of cycle {st.cycle} nets {list(st.net)}, "
                    f"its trades net {list(recomputed)}",
                )
        settled: dict[int, int] = {}
        agreed: set[int] = set()
        for index, sender, receiver, answer in self.answers:
            where = f"record {index}"
            if (sender, receiver) != (high.node_id, low.node_id):
                problem(where, f"answer for cycle {answer.cycle} sent by {low.name}")
                continue
            proposed = by_cycle.get(answer.cycle)
            if proposed is None:
                problem(where, f"answers cycle {answer.cycle}, whose proposal is not in the bundle")
                continue
            if answer.reason or answer.cycle in agreed:
                continue
            if answer.statement_hash != proposed[2]:
                problem(
                    where,
                    f"agrees to statement {answer.statement_hash} for cycle {answer.cycle}, "
                    f"but the proposal (record {proposed[0]}) hashes to {proposed[2]}",
                )
                continue
            agreed.add(answer.cycle)
            for lock in proposed[1].lock_ids:
                if lock in settled:
                    problem(
                        where,
                        f"lock {lock} settled twice: cycles {settled[lock]} and {answer.cycle}",
                    )
                settled[lock] = answer.cycle
        self.result.agreed = len(agreed)
        self.result.unsettled = dict(
            net_of(
                self._low_owes(t)
                for lock, t in trades.items()
                if t.in_period and lock not in settled
            )
        )

    # ----------------------------------------------------------------- bonds

    def _bonds(self) -> None:
        done: set[tuple[NodeId, int]] = set()
        posted: dict[str, Counter[str]] = {}
        for _, poster, answer in self.bond_answers:
            request = self.bond_requests.get((poster, answer.bond_id))
            if answer.reason or request is None or (poster, answer.bond_id) in done:
                continue
            done.add((poster, answer.bond_id))
            amount = -request.amount if request.withdraw else request.amount
            posted.setdefault(self.name[poster], Counter())[request.asset] += amount
        self.result.bonds = {n: dict(sorted(c.items())) for n, c in sorted(posted.items())}


# ------------------------------------------------------------------ lines


def _parse_line(raw: bytes, fields: frozenset[str]) -> dict[str, object]:
    """A line's object: ASCII, JSON, exactly ``fields``, in canonical form."""
    try:
        doc = json.loads(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise _LineError("not ASCII") from None
    except (ValueError, RecursionError):
        raise _LineError("not a JSON line") from None
    if not isinstance(doc, dict) or set(doc) != fields:
        raise _LineError(f"not a line of this kind: fields must be {sorted(fields)}")
    try:
        in_canonical_form = canonical(doc) == raw
    except (ValueError, RecursionError):
        in_canonical_form = False
    if not in_canonical_form:
        raise _LineError("not in canonical form (sorted keys, no spaces, ASCII)")
    return doc


def _int(doc: Mapping[str, object], name: str) -> int:
    value = doc[name]
    if type(value) is not int or not 0 <= value <= MAX_INT64:
        raise _LineError(f"{name}: must be an integer from 0 to {MAX_INT64}")
    return value


def _hex(doc: Mapping[str, object], name: str, pattern: re.Pattern[str]) -> str:
    value = doc[name]
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _LineError(f"{name}: not lowercase hex of the right length")
    return value


def _node_id(doc: Mapping[str, object], name: str) -> NodeId:
    value = doc[name]
    if not isinstance(value, str) or _HEX_64.fullmatch(value) is None:
        raise _LineError(f"{name}: not a node id")
    return check_node_id(NodeId(value))

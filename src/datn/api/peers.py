"""The operator's API for peers and bonds (DESIGN.md section 7): add a peer,
see each peer's link, exposure, bonds, locks, acceptance ratios, settlement
and defaults, post and withdraw bonds, confirm that a peer's bond money
arrived, and reinstate a suspended peer.

Reads come from the core inside ``runtime.read``, so they show only what is
durable. Writes are the core's own operator inputs (``AddPeerInput``,
``BondInput``, ``BondReceivedInput``, ``ReinstateInput``). The core journals
every input and ignores, counting why, one it cannot apply; an API that
only forwarded would journal refused requests and answer as if they had
worked. So each write first checks, on the core's state, what the core
would check, and refuses at the edge with a stable code, journaling
nothing. Nothing awaits between that check and the submit, so no other
input is applied in between. Should the core refuse anyway (the counter it
keeps for that refusal moved), the answer is the same refusal: the input is
then in the journal, and changed nothing but that counter.

What the core does not know is shown as null, never estimated: a round
trip and a clock offset exist only once a heartbeat came back. A peer's link
state comes from the node's peer links (:mod:`datn.net`): whether the
connections each way are open, and how many frames wait for the peer's
acknowledgement.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from datn.api.app import Amount, Node, Refusals, submit_checked
from datn.api.errors import ApiError
from datn.api.references import Reference, Terms, movement
from datn.clearing.exposure import exposure, exposure_cap, obligations
from datn.clearing.quota import PERMILLE, AcceptanceRatio, lock_quota
from datn.domain import AssetCode
from datn.domain.limits import MAX_AMOUNT_MINOR
from datn.domain.value import NodeId
from datn.evidence import EvidenceRecord as LogRecord
from datn.evidence import Party, export_bundle
from datn.ledger import AccountKey
from datn.protocol.effects import (
    AddPeerInput,
    BondInput,
    BondReceivedInput,
    Effect,
    Pay,
    ReinstateInput,
    Send,
)
from datn.protocol.liability import CAPITAL_OWNER, PeerClearing, collateral_owner
from datn.protocol.messages import BondAnswer, BondRequest
from datn.protocol.node import NodeCore
from datn.runtime.config import ConfigError, check_address
from datn.store import StoreError
from datn.wire import read_header

MAX_PEERS: Final = 4_096
"""Most peers the operator may add: each costs the node state and heartbeats."""
MAX_PENDING_BOND_REQUESTS: Final = 16
"""Most bond requests of this node a peer may have unanswered (the one out
and those queued behind it): a peer that does not answer must not let the
queue grow without bound."""
NOT_LINKED: Final = "not_linked"
"""The link state of a peer the node has no address for: it cannot send to
it (its frames wait in the outbox) until the operator gives one."""

PeerId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
"""A node id: its Ed25519 public key, 64 lowercase hex digits."""
BondId = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]


# ------------------------------------------------------------------ bodies


class NewPeer(msgspec.Struct, forbid_unknown_fields=True):
    node_id: PeerId
    address: Annotated[str, msgspec.Meta(max_length=300)] | None = None
    """Where the peer listens for links, ``ws://HOST:PORT``: the node dials
    it to send to the peer. Given again, it replaces the one kept."""


class BondChange(msgspec.Struct, forbid_unknown_fields=True):
    """Post ``amount`` more bond with ``peer``, or ask that much back."""

    peer: PeerId
    amount: Amount
    reference: Reference | None = None
    """Makes a retry safe: the bond request is made once
    (:mod:`datn.api.references`)."""


class BondReceipt(msgspec.Struct, forbid_unknown_fields=True):
    """This node's rail received ``amount`` of ``asset`` from ``peer`` for
    the peer's bond request ``bond_id``."""

    peer: PeerId
    bond_id: BondId
    asset: str
    amount: Amount


# ------------------------------------------------------------------ views


class Link(msgspec.Struct):
    state: str
    """``up`` (both directions open), ``sending`` or ``receiving`` (one
    open), ``down`` (the node dials the peer and waits for it), or
    ``not_linked`` (no address to dial: the peer must be given one)."""
    rtt_ms: int | None
    """The smoothed round trip, once a heartbeat came back; null before."""
    rtt_variation_ms: int | None
    clock_offset_ms: int | None
    """The peer's wall clock minus this node's, from the latest heartbeat."""
    rtt_samples: int
    rtt_budget_ms: int
    """What an originator budgets for the round trip (smoothed RTT plus four
    deviations): from the configured default until samples come in."""
    address: str | None = None
    """Where this node dials the peer to send to it."""
    unacked_frames: int = 0
    """Frames sent or waiting to be, not yet acknowledged as kept by the
    peer: they stay in the durable outbox and are resent until they are."""
    last_sent_seq: int = 0
    acked_seq: int = 0
    received_seq: int = 0
    """Every frame of the peer up to this sequence number is kept here."""


class Exposure(msgspec.Struct):
    asset: str
    position_minor: int
    """The peer's accounts here, marked at prices it does not set: positive,
    this node owes the peer; negative, the peer owes this node."""
    owed_by_peer_minor: int
    open_lock_notional_minor: int
    exposure_minor: int
    """What the peer owes plus the locks open for it."""
    cap_minor: int
    """What the peer's bond here allows."""
    room_minor: int
    """Cap less exposure: the notional of locks this node may still offer it."""
    owed_to_peer_minor: int
    owed_to_peer_cap_minor: int
    """What this node's own bond with the peer allows it to owe."""


class BondRequestView(msgspec.Struct):
    bond_id: int
    amount_minor: int
    withdraw: bool
    paid: bool
    """For a posting: the money left over the rail (the peer awaits it)."""


class BondClaim(msgspec.Struct):
    """The peer's request to post ``amount_minor``, awaiting its money:
    confirm the receipt of ``bond_id`` to book it."""

    bond_id: int
    amount_minor: int


class Receipt(msgspec.Struct):
    """Money the rail reported for a bond the peer has not claimed yet."""

    bond_id: int
    asset: str
    amount_minor: int


class BondAnswerView(msgspec.Struct):
    bond_id: int
    outcome: str
    """``booked``, or why it was refused (``receipt_mismatch``, ...)."""


class Bonds(msgspec.Struct):
    asset: str
    posted_minor: int
    """This node's bond with the peer, as the peer booked it."""
    held_minor: int
    """The peer's bond with this node, received and booked: what counts."""
    collateral_minor: int
    """The cash behind it in this node's ledger (less any default claim)."""
    received_minor: int
    returned_minor: int
    outgoing: BondRequestView | None
    """This node's request the peer has not answered finally yet."""
    queued: list[BondRequestView]
    claim: BondClaim | None
    receipts: list[Receipt]
    last_answer: BondAnswerView | None
    """This node's latest answer to the peer's requests."""


class Locks(msgspec.Struct):
    open: int
    """Locks this node holds open for the peer."""
    open_notional_minor: int
    quota_locks: int
    quota_notional_minor: int
    """The peer's lock quota: from its bond, shrunk by a poor acceptance ratio."""
    acceptances_pending: int
    """Acceptances this node sent the peer that it has not decided on."""
    in_doubt: int
    """Of those, ones an order stopped waiting for."""


class OffersTaken(msgspec.Struct):
    """Of the lock notional this node offered the peer, how much it took
    (decayed): the ratio its lock quota is judged by."""

    offered_minor: int
    taken_minor: int
    ratio_permille: int | None
    """As the quota reads it (1000 until enough was offered to judge); null
    if nothing was ever offered."""


class AcceptancesConfirmed(msgspec.Struct):
    """Of the notional this node accepted from the peer as holder, how much
    it confirmed rather than refused or let lapse (decayed)."""

    accepted_minor: int
    confirmed_minor: int
    ratio_permille: int | None
    """Below the node's ``unreliable_permille`` the peer is routed last."""


class AdvertsHonoured(msgspec.Struct):
    """Lots the peer's adverts led this node to expect, and lots it offered."""

    expected_lots: int
    offered_lots: int
    ratio_permille: int | None


class AcceptanceRatios(msgspec.Struct):
    offers_taken: OffersTaken
    acceptances_confirmed: AcceptancesConfirmed
    adverts_honoured: AdvertsHonoured


class Settlement(msgspec.Struct):
    role: str
    """``proposer`` (this node has the lower id) or ``answerer``."""
    last_cycle: int
    statements_settled: int
    unsettled_trades: int
    oldest_unsettled_age_ms: int | None
    default_in_ms: int | None
    """Time left before the oldest unsettled trade makes the peer default."""
    proposal_cycle: int | None
    """A statement this node proposed and the peer has not answered."""
    proposal_trades: int | None
    last_answer_cycle: int | None
    last_answer_outcome: str | None
    """As answerer: ``settled``, or why the statement was refused."""


class Claim(msgspec.Struct):
    """One default declared on the peer and not reversed: ``claimed_minor``
    taken from its bond, ``loss_minor`` recorded beyond it."""

    number: int
    claimed_minor: int
    loss_minor: int


class ViolationView(msgspec.Struct):
    reason: str
    age_ms: int


class Defaults(msgspec.Struct):
    suspended: bool
    reason: str | None
    """``default``, ``notices`` (other peers declared it) or ``violation``."""
    declared: int
    """Defaults this node declared on the peer, in all."""
    open_claims: list[Claim]
    declared_by: list[str]
    """Other peers that declared this peer in default."""
    declared_us: int
    """Times the peer declared this node in default."""
    violations: list[ViolationView]


class NetworkBook(msgspec.Struct):
    adverts: int
    stale: bool
    """The peer announced adverts this node has not seen."""


class PeerStatus(msgspec.Struct):
    node_id: str
    link: Link
    exposure: Exposure
    bonds: Bonds
    locks: Locks
    acceptance: AcceptanceRatios
    settlement: Settlement
    defaults: Defaults
    network_book: NetworkBook


class BondResult(msgspec.Struct):
    peer: str
    bond_id: int
    asset: str
    amount: int
    withdraw: bool
    status: str
    """``sent`` to the peer, or ``queued`` behind a request it has not answered."""
    bonds: Bonds
    reference: str | None = None


class ReceiptResult(msgspec.Struct):
    peer: str
    bond_id: int
    asset: str
    amount: int
    status: str
    """``booked`` (the peer's claim matched: its bond counts now),
    ``returned`` (the claim was for other terms: refused, the money goes
    back), or ``awaiting_claim`` (kept until the peer's claim arrives)."""
    bonds: Bonds
    exposure: Exposure


class Reinstated(msgspec.Struct):
    peer: str
    suspended_for: str
    reversed_claims: list[Claim]
    status: PeerStatus


# ------------------------------------------------------------------ reading


@dataclass(frozen=True, slots=True)
class _Network:
    """What is read once for every peer: the originator's ratios per holder
    (from its snapshot, their only public reading) and its open acceptances."""

    now_mono_ms: int
    reliability: Mapping[str, tuple[int, int, int, int]]
    credibility: Mapping[str, tuple[int, int, int, int]]
    pending: Counter[str]
    in_doubt: Counter[str]


def _network(core: NodeCore, now_mono_ms: int) -> _Network:
    originator = core.originator
    state = originator.snapshot()
    pending: Counter[str] = Counter(
        holder for working in originator.working.values() for holder, _ in working.accepted
    )
    return _Network(
        now_mono_ms,
        dict(state.reliability),
        dict(state.credibility),
        pending,
        Counter(holder for holder, _ in originator.in_doubt),
    )


def _decayed(
    state: tuple[int, int, int, int] | None, now_ms: int, min_offered: int
) -> tuple[int, int, int | None]:
    """Offered, taken and the ratio of a decayed copy of a ratio's state: the
    core's own ratio is left as it is (decaying it would change state)."""
    if state is None:
        return 0, 0, None
    ratio = AcceptanceRatio.from_state(state)
    permille = ratio.permille(now_ms, min_offered)
    return ratio.offered, ratio.taken, permille


def all_peers(core: NodeCore, now_mono_ms: int) -> list[PeerStatus]:
    seen = _network(core, now_mono_ms)
    return [_status(core, peer, seen) for peer in sorted(core.liability.peers)]


def one_peer(core: NodeCore, peer: NodeId, now_mono_ms: int) -> PeerStatus | None:
    if peer not in core.liability.peers:
        return None
    return _status(core, peer, _network(core, now_mono_ms))


def _status(core: NodeCore, peer: NodeId, seen: _Network) -> PeerStatus:
    view = core.liability.peers[peer]
    now = seen.now_mono_ms
    return PeerStatus(
        peer,
        _link(core, peer),
        _exposure(core, peer, view),
        _bonds(core, peer, view),
        _locks(core, peer, view, seen),
        _acceptance(core, peer, view, seen),
        _settlement(core, peer, view, now),
        _defaults(view, now),
        _network_book(core, peer),
    )


def _link(core: NodeCore, peer: NodeId) -> Link:
    rtt = core.network.views[peer]
    measured = rtt.rtt_samples > 0
    return Link(
        NOT_LINKED,
        rtt.srtt_ms if measured else None,
        rtt.rttvar_ms if measured else None,
        rtt.offset_ms if measured else None,
        rtt.rtt_samples,
        rtt.rtt_budget_ms,
    )


def _exposure(core: NodeCore, peer: NodeId, view: PeerClearing) -> Exposure:
    clearing = core.config.clearing
    marked = core.liability.marked(peer)
    lock_notional, _ = core.holder.open_for(peer)
    at_risk = exposure(marked, lock_notional)
    cap = exposure_cap(view.bond_held, clearing.exposure_multiple_percent)
    return Exposure(
        clearing.bond_asset,
        marked,
        max(0, -marked),
        lock_notional,
        at_risk,
        cap,
        cap - at_risk,
        obligations(marked),
        core.liability.posted_cap(peer),
    )


def _bonds(core: NodeCore, peer: NodeId, view: PeerClearing) -> Bonds:
    asset = core.config.clearing.bond_asset
    collateral = AccountKey(collateral_owner(peer), AssetCode(asset))
    outgoing = view.outgoing
    claim = view.claim
    answer = view.last_answer
    return Bonds(
        asset,
        view.bond_posted,
        view.bond_held,
        core.context.ledger.balance(collateral),
        view.received,
        view.returned,
        None if outgoing is None else _request_view(outgoing, view.outgoing_paid),
        [_request_view(request, False) for request in view.queued],
        None if claim is None else BondClaim(claim.bond_id, claim.amount),
        [Receipt(bond_id, a, amount) for bond_id, (a, amount) in sorted(view.receipts.items())],
        None if answer is None else BondAnswerView(answer.bond_id, answer.reason or "booked"),
    )


def _request_view(request: BondRequest, paid: bool) -> BondRequestView:
    return BondRequestView(request.bond_id, request.amount, request.withdraw, paid)


def _locks(core: NodeCore, peer: NodeId, view: PeerClearing, seen: _Network) -> Locks:
    quota_config = core.config.clearing.quota
    notional, count = core.holder.open_for(peer)
    state = None if view.ratio is None else view.ratio.state()
    _, _, permille = _decayed(state, seen.now_mono_ms, quota_config.ratio_min_offered_minor)
    quota = lock_quota(view.bond_held, PERMILLE if permille is None else permille, quota_config)
    return Locks(
        count,
        notional,
        quota.max_locks,
        quota.max_lock_notional,
        seen.pending[peer] + seen.in_doubt[peer],
        seen.in_doubt[peer],
    )


def _acceptance(
    core: NodeCore, peer: NodeId, view: PeerClearing, seen: _Network
) -> AcceptanceRatios:
    now = seen.now_mono_ms
    min_offered = core.config.clearing.quota.ratio_min_offered_minor
    state = None if view.ratio is None else view.ratio.state()
    offered, taken, permille = _decayed(state, now, min_offered)
    accepted, confirmed, reliable = _decayed(seen.reliability.get(peer), now, 0)
    expected, offered_lots, credible = _decayed(seen.credibility.get(peer), now, 0)
    return AcceptanceRatios(
        OffersTaken(offered, taken, permille),
        AcceptancesConfirmed(accepted, confirmed, reliable),
        # Kept in thousandths of a lot, so that decay keeps its precision.
        AdvertsHonoured(expected // 1_000, offered_lots // 1_000, credible),
    )


def _settlement(core: NodeCore, peer: NodeId, view: PeerClearing, now: int) -> Settlement:
    deadline_ms = core.config.clearing.settlement_deadline_ms
    booked = view.unsettled_at
    oldest = min(booked.values()) if booked else None
    proposal = view.proposal
    answer = view.last_statement_answer
    return Settlement(
        "proposer" if core.node_id < peer else "answerer",
        view.cycle,
        view.settled,
        len(view.unsettled),
        None if oldest is None else now - oldest,
        None if oldest is None or view.suspended else max(0, oldest + deadline_ms - now),
        None if proposal is None else proposal.statement.cycle,
        None if proposal is None else len(proposal.statement.lock_ids),
        None if answer is None else answer.cycle,
        None if answer is None else answer.reason or "settled",
    )


def _defaults(view: PeerClearing, now: int) -> Defaults:
    return Defaults(
        bool(view.suspended),
        view.suspended or None,
        view.defaults,
        _claims(view),
        sorted(view.witnesses),
        view.declared_us,
        [ViolationView(reason, now - at) for reason, at in view.violations],
    )


def _claims(view: PeerClearing) -> list[Claim]:
    return [Claim(r.number, r.claimed, r.loss) for r in view.open_defaults]


def _network_book(core: NodeCore, peer: NodeId) -> NetworkBook:
    view = core.network.views[peer]
    return NetworkBook(len(view.adverts), view.stale)


async def _read_peer(node: Node, peer: NodeId) -> PeerStatus:
    status = await node.runtime.read(lambda core: one_peer(core, peer, _now_ms(node)))
    if status is None:
        raise _unknown(peer)
    return _with_link(node, status)


def _with_link(node: Node, status: PeerStatus) -> PeerStatus:
    """``status`` with its link as the node's peer links see it."""
    if node.links is None:
        return status
    seen = node.links.status(NodeId(status.node_id))
    link = status.link
    sending, receiving = seen["sending"] == "up", seen["receiving"] == "up"
    if seen["address"] is None:
        link.state = NOT_LINKED
    elif sending and receiving:
        link.state = "up"
    elif sending or receiving:
        link.state = "sending" if sending else "receiving"
    else:
        link.state = "down"
    link.address = seen["address"]
    link.unacked_frames = seen["unacked_frames"]
    link.last_sent_seq = seen["last_sent_seq"]
    link.acked_seq = seen["acked_seq"]
    link.received_seq = seen["received_seq"]
    return status


def _now_ms(node: Node) -> int:
    return node.runtime.clock.now().mono_ms


# ------------------------------------------------------------------ writing

BOND_REFUSALS: Final[Refusals] = {
    "bond_request_invalid": (422, "bond_request_invalid"),
    "bond_withdraw_beyond_posted": (422, "withdraw_beyond_posted"),
    "bond_post_without_capital": (422, "insufficient_capital"),
}
RECEIPT_REFUSALS: Final[Refusals] = {
    "bond_receipt_invalid": (422, "bond_receipt_invalid"),
    "bond_receipt_repeated": (409, "receipt_repeated"),
    "bond_receipt_over_limit": (422, "too_many_receipts"),
}
REINSTATE_REFUSALS: Final[Refusals] = {"reinstate_not_suspended": (409, "not_suspended")}
PEER_REFUSALS: Final[Refusals] = {"peers_invalid": (422, "invalid_peer")}


def _unknown(peer: str) -> ApiError:
    return ApiError(404, "unknown_peer", f"{peer} is not a peer of this node; see GET /admin/peers")


def _known(core: NodeCore, peer: NodeId) -> PeerClearing:
    view = core.liability.peers.get(peer)
    if view is None:
        raise _unknown(peer)
    return view


@post("/admin/peers", status_code=201)
async def add_peer(
    data: JSONBody[NewPeer], admin: NamedDependency[bool], node: NamedDependency[Node]
) -> Response[PeerStatus]:
    """Add a peer (201); one that is a peer already is shown as it is (200)."""
    core = node.runtime.core
    peer = NodeId(data.node_id)
    if peer == core.node_id:
        raise ApiError(422, "own_node_id", "that is this node's own id")
    address = None
    if data.address is not None:
        try:
            address = check_address(data.address, "address")
        except ConfigError as error:
            raise ApiError(422, "bad_address", error.problem) from None
    known = peer in core.liability.peers
    if not known:
        if len(core.liability.peers) >= MAX_PEERS:
            raise ApiError(
                422, "too_many_peers", f"this node has {MAX_PEERS} peers, the most it takes"
            )
        await submit_checked(node, AddPeerInput(peer), PEER_REFUSALS)
    if address is not None:
        await _keep_address(node, peer, address)
    return Response(await _read_peer(node, peer), status_code=200 if known else 201)


async def _keep_address(node: Node, peer: NodeId, address: str) -> None:
    store = node.runtime.store
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, store.put_peer_address, peer, address)
    except StoreError as error:
        raise ApiError(
            503, "store_unavailable", f"the address could not be kept: {error}"
        ) from None
    if node.links is not None:
        node.links.dial(peer, address)


@get("/admin/peers")
async def list_peers(admin: NamedDependency[bool], node: NamedDependency[Node]) -> list[PeerStatus]:
    """Every peer: link, exposure, bonds, locks, acceptance, settlement, defaults."""
    found = await node.runtime.read(lambda core: all_peers(core, _now_ms(node)))
    return [_with_link(node, status) for status in found]


@get("/admin/peers/{node_id:str}")
async def get_peer(
    node_id: FromPath[str], admin: NamedDependency[bool], node: NamedDependency[Node]
) -> PeerStatus:
    return await _read_peer(node, NodeId(node_id))


@get("/admin/evidence/{node_id:str}", media_type="application/x-ndjson")
async def export_evidence(
    node_id: FromPath[str],
    admin: NamedDependency[bool],
    node: NamedDependency[Node],
    since_ms: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
    until_ms: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
) -> Response[bytes]:
    """The evidence bundle of this node and peer ``node_id`` over
    ``[since_ms, until_ms)`` (the node's wall clock, ms): every signed frame
    between them that carries part of a trade, a settlement or a bond, with
    the earlier frames those refer to, sealed by this node. ``datn evidence
    verify`` checks it with nothing but the bundle."""
    peer = NodeId(node_id)
    core = node.runtime.core
    _known(core, peer)
    if node.key is None:
        raise ApiError(503, "no_key", "this node runs without its key: it cannot seal a bundle")
    if until_ms is not None and until_ms <= since_ms:
        raise ApiError(422, "bad_period", "until_ms must be after since_ms")
    await node.runtime.read(lambda _core: None)  # everything before is durable
    loop = asyncio.get_running_loop()
    end = 2**62 if until_ms is None else until_ms
    stored = await loop.run_in_executor(None, node.runtime.store.evidence, peer, 0, end)
    log = []
    for record in stored:
        header = read_header(record.frame)
        log.append(LogRecord(record.at_ms, header.sender, header.receiver, record.frame))
    bundle = export_bundle(
        log,
        node.key,
        Party(core.node_id, core.node_id),
        Party(peer, peer),
        core.context.products.values(),
        since_ms,
        until_ms,
    )
    return Response(bundle, media_type="application/x-ndjson")


@post("/admin/peers/{node_id:str}/reinstate", status_code=200)
async def reinstate_peer(
    node_id: FromPath[str], admin: NamedDependency[bool], node: NamedDependency[Node]
) -> Reinstated:
    """Trade with a suspended peer again: its open default claims and losses
    are reversed, and its unsettled trades settle as usual."""
    peer = NodeId(node_id)
    view = _known(node.runtime.core, peer)
    if not view.suspended:
        raise ApiError(409, "not_suspended", f"{peer} is not suspended")
    reason, reversed_claims = view.suspended, _claims(view)
    await submit_checked(node, ReinstateInput(peer), REINSTATE_REFUSALS)
    return Reinstated(peer, reason, reversed_claims, await _read_peer(node, peer))


@post("/admin/bonds", status_code=201)
async def post_bond(
    data: JSONBody[BondChange], admin: NamedDependency[bool], node: NamedDependency[Node]
) -> Response[BondResult]:
    """Post more bond with a peer: the amount is held from the node's capital
    until the peer books it (it asks for the money, and the rail pays). With
    a ``reference``, a retry is answered 200 as the first was, and posts
    nothing more."""
    return await _change_bond(node, data, withdraw=False)


@post("/admin/bonds/withdrawals", status_code=201)
async def withdraw_bond(
    data: JSONBody[BondChange], admin: NamedDependency[bool], node: NamedDependency[Node]
) -> Response[BondResult]:
    """Ask a peer for bond back. The peer refuses while this node owes it
    anything, has locks open there or is suspended there."""
    return await _change_bond(node, data, withdraw=True)


async def _change_bond(node: Node, data: BondChange, *, withdraw: bool) -> Response[BondResult]:
    core = node.runtime.core
    peer = NodeId(data.peer)
    view = _known(core, peer)
    kind = "bond_withdrawal" if withdraw else "bond"
    terms: Terms = {"peer": data.peer, "amount": data.amount}
    async with movement(node, data.reference, kind, terms) as step:
        if step.kept is None:
            _check_bond_change(core, peer, view, data.amount, withdraw)
            bond_id = view.next_bond_id + 1

            def facts(effects: list[Effect]) -> Terms:
                sent = any(
                    type(e) is Send
                    and e.peer == peer
                    and type(e.message) is BondRequest
                    and e.message.bond_id == bond_id
                    for e in effects
                )
                return {"bond_id": bond_id, "status": "sent" if sent else "queued"}

            effects = await submit_checked(
                node, BondInput(peer, data.amount, withdraw), BOND_REFUSALS, step, facts
            )
            made = facts(effects)
        else:
            made = step.kept.facts
    bonds = await node.runtime.read(lambda c: _bonds(c, peer, c.liability.peers[peer]))
    asset = core.config.clearing.bond_asset
    bond_id, status = int(made["bond_id"]), str(made["status"])
    result = BondResult(peer, bond_id, asset, data.amount, withdraw, status, bonds, data.reference)
    return Response(result, status_code=201 if step.kept is None else 200)


def _check_bond_change(
    core: NodeCore, peer: NodeId, view: PeerClearing, amount: int, withdraw: bool
) -> None:
    """Refuse a bond request the peer or the node's capital could not take."""
    asset = core.config.clearing.bond_asset
    pending = [r for r in (view.outgoing, *view.queued) if r is not None]
    if len(pending) >= MAX_PENDING_BOND_REQUESTS:
        raise ApiError(
            422,
            "bond_requests_pending",
            f"{len(pending)} bond requests to {peer} are unanswered; wait for its answers",
        )
    if withdraw:
        withdrawing = sum(r.amount for r in pending if r.withdraw)
        if amount > view.bond_posted - withdrawing:
            raise ApiError(
                422,
                "withdraw_beyond_posted",
                f"{amount} is more than the bond posted with {peer} and not being withdrawn",
                posted_minor=view.bond_posted,
                withdrawing_minor=withdrawing,
            )
    else:
        available = core.context.ledger.available(AccountKey(CAPITAL_OWNER, AssetCode(asset)))
        if amount > available:
            raise ApiError(
                422,
                "insufficient_capital",
                f"the node's available {asset} capital is {available}; fund it first",
                available_minor=available,
            )


@post("/admin/bonds/receipts", status_code=201)
async def confirm_bond(
    data: JSONBody[BondReceipt], admin: NamedDependency[bool], node: NamedDependency[Node]
) -> ReceiptResult:
    """The operator confirms that this node's rail received a peer's bond
    money: the only way a peer's bond counts here."""
    core = node.runtime.core
    peer = NodeId(data.peer)
    view = _known(core, peer)
    clearing = core.config.clearing
    if data.asset != clearing.bond_asset:
        raise ApiError(
            422,
            "wrong_asset",
            f"bonds are posted in {clearing.bond_asset}",
            bond_asset=clearing.bond_asset,
        )
    if data.bond_id <= view.last_bond_id or data.bond_id in view.receipts:
        raise ApiError(
            409, "receipt_repeated", f"bond {data.bond_id} of {peer} is answered or received"
        )
    collateral = AccountKey(collateral_owner(peer), AssetCode(data.asset))
    booked = max(view.received, core.context.ledger.balance(collateral))
    if booked + data.amount > MAX_AMOUNT_MINOR:
        raise ApiError(
            422,
            "amount_out_of_range",
            f"{peer}'s bond money would pass {MAX_AMOUNT_MINOR}, the most a balance holds",
        )
    if len(view.receipts) >= clearing.max_receipts_per_peer:
        raise ApiError(
            422,
            "too_many_receipts",
            f"{peer} has {len(view.receipts)} receipts waiting for its claims, the most kept",
        )
    event = BondReceivedInput(peer, data.bond_id, data.asset, data.amount)
    effects = await submit_checked(node, event, RECEIPT_REFUSALS)
    status = _receipt_outcome(effects, peer, data.bond_id)

    def read(c: NodeCore) -> tuple[Bonds, Exposure]:
        now_view = c.liability.peers[peer]
        return _bonds(c, peer, now_view), _exposure(c, peer, now_view)

    bonds, exposed = await node.runtime.read(read)
    return ReceiptResult(peer, data.bond_id, data.asset, data.amount, status, bonds, exposed)


def _receipt_outcome(effects: list[Effect], peer: NodeId, bond_id: int) -> str:
    for effect in effects:
        if type(effect) is Pay and effect.peer == peer and effect.ref == bond_id:
            return "returned"
        if (
            type(effect) is Send
            and effect.peer == peer
            and type(effect.message) is BondAnswer
            and effect.message.bond_id == bond_id
            and not effect.message.reason
        ):
            return "booked"
    return "awaiting_claim"


PEER_HANDLERS: Final = [
    add_peer,
    list_peers,
    get_peer,
    reinstate_peer,
    post_bond,
    withdraw_bond,
    confirm_bond,
    export_evidence,
]
"""The routes :func:`datn.api.app.admin_app` serves for peers and bonds."""

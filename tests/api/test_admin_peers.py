"""The operator's peers and bonds API, in process on a node with a SQLite
store and a clock the test moves: adding and listing peers, posting and
withdrawing bonds (the requests reach the runtime's send outlet), confirming
a peer's bond (only that makes it count), reinstating a suspended peer;
every refusal a 4xx with a code that journals nothing. Then the same
through ``datn admin`` against a real node process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from datn.api.app import Node, admin_app
from datn.api.auth import Verifier, token_digest
from datn.api.errors import ApiError
from datn.api.peers import (
    BOND_REFUSALS,
    MAX_PENDING_BOND_REQUESTS,
    REINSTATE_REFUSALS,
    submit_checked,
)
from datn.clearing.exposure import exposure_cap
from datn.clearing.quota import lock_quota
from datn.domain import USD, AssetCode, ProductKind, ProductSpec
from datn.ledger import AccountKey
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import (
    AddPeerInput,
    BondInput,
    Effect,
    Genesis,
    Input,
    Pay,
    ReceiveInput,
    ReinstateInput,
    Send,
    TickInput,
)
from datn.protocol.messages import BondAnswer, BondRequest, DefaultNotice, Heartbeat, Message
from datn.protocol.node import NodeConfig
from datn.risk import RiskConfig
from datn.runtime import NodeRuntime, Outlets
from datn.runtime.history import history_of
from datn.store.sqlite import SQLiteStore
from datn.wire import decode_entry

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
NODE = "a" * 64
PEER = "b" * 64
OTHER = "c" * 64
THIRD = "d" * 64
TOKEN = "operator token"
CONFIG = NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id})))
GENESIS = Genesis(NODE, CONFIG, (XYZ,), (), b"admin peers test secret", ((XYZ.product_id, 5_000),))


@dataclass
class ManualClock:
    """The node's clocks, moved only by the test."""

    mono_ms: int = 1_000_000
    wall_ms: int = 1_800_000_000_000

    def now(self) -> Now:
        return Now(self.mono_ms, self.wall_ms)


@dataclass
class Harness:
    node: Node
    runtime: NodeRuntime
    store: SQLiteStore
    http: httpx.AsyncClient
    clock: ManualClock
    sent: list[Send] = field(default_factory=list)
    paid: list[Pay] = field(default_factory=list)

    async def receive(self, sender: str, message: Message) -> list[Effect]:
        """A message from ``sender``, as a peer link would hand it over."""
        hlc = Hlc(self.clock.wall_ms)
        return await self.runtime.submit(ReceiveInput(sender, hlc, message))

    async def state_hash(self) -> str:
        return await self.runtime.read(lambda core: core.state_hash())

    def journaled(self) -> list[Input]:
        """Every input in the journal but timer ticks."""
        entries = [decode_entry(data).input for _, data in self.store.entries(0, 100_000)]
        return [entry for entry in entries if not isinstance(entry, TickInput)]

    async def peer(self, node_id: str = PEER) -> dict[str, Any]:
        answer = await self.http.get(f"/admin/peers/{node_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@contextlib.asynccontextmanager
async def node_with_admin_api(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = ManualClock()
    store = SQLiteStore(tmp_path / "node.sqlite3")
    history = history_of(store)
    sent: list[Send] = []
    paid: list[Pay] = []
    outlets = Outlets(send=sent.append, pay=paid.append)
    runtime = await NodeRuntime.open(store, GENESIS, clock=clock, outlets=outlets, history=history)
    # The first tick schedules the heartbeats; later ones, on a clock that
    # stands still, change nothing, so state hashes compare exactly.
    await runtime.submit(TickInput())
    node = Node(runtime, history, Verifier(store))
    app = admin_app(node, token_digest(TOKEN))
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://admin", headers=headers
    ) as http:
        try:
            yield Harness(node, runtime, store, http, clock, sent, paid)
        finally:
            await runtime.close()


def serve(tmp_path: Path, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with node_with_admin_api(tmp_path) as harness:
            await scenario(harness)

    asyncio.run(asyncio.wait_for(main(), timeout=30))


async def add(harness: Harness, *peers: str) -> None:
    for peer in peers:
        added = await harness.http.post("/admin/peers", json={"node_id": peer})
        assert added.status_code == 201, added.text


async def fund(harness: Harness, amount: int) -> None:
    funded = await harness.http.post("/admin/fund", json={"asset": "USD", "amount": amount})
    assert funded.status_code == 201, funded.text


def refused(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = dict(answer.json())
    assert body["code"] == code and body["message"], body
    return body


def test_a_peer_is_added_and_listed_with_what_is_not_known_yet_as_null(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        assert (await h.http.get("/admin/peers")).json() == []
        added = await h.http.post("/admin/peers", json={"node_id": PEER})
        assert added.status_code == 201, added.text
        peer = added.json()
        assert peer["node_id"] == PEER
        assert peer["link"] == {
            "state": "not_linked",
            "rtt_ms": None,
            "rtt_variation_ms": None,
            "clock_offset_ms": None,
            "rtt_samples": 0,
            "rtt_budget_ms": CONFIG.default_rtt_ms + 4 * (CONFIG.default_rtt_ms // 2),
            "address": None,
            "unacked_frames": 0,
            "last_sent_seq": 0,
            "acked_seq": 0,
            "received_seq": 0,
        }
        assert peer["exposure"]["exposure_minor"] == 0 and peer["exposure"]["cap_minor"] == 0
        assert peer["bonds"]["held_minor"] == 0 and peer["bonds"]["claim"] is None
        assert peer["locks"] == {
            "open": 0,
            "open_notional_minor": 0,
            "quota_locks": 0,
            "quota_notional_minor": 0,
            "acceptances_pending": 0,
            "in_doubt": 0,
        }
        assert peer["acceptance"]["offers_taken"]["ratio_permille"] is None
        assert peer["settlement"]["role"] == "proposer"  # this node has the lower id
        assert peer["settlement"]["unsettled_trades"] == 0
        assert peer["settlement"]["default_in_ms"] is None
        assert peer["defaults"]["suspended"] is False and peer["defaults"]["open_claims"] == []
        # Reads change nothing (decayed ratios are read from copies).
        before = await h.state_hash()
        listed = (await h.http.get("/admin/peers")).json()
        assert listed == [peer]
        assert await h.peer() == peer
        assert await h.state_hash() == before
        # Adding it again shows it as it is and journals nothing.
        again = await h.http.post("/admin/peers", json={"node_id": PEER})
        assert again.status_code == 200 and again.json() == peer
        assert h.journaled().count(AddPeerInput(PEER)) == 1
        for bad in ("b" * 63, "B" * 64, "not a node id", 7):
            refused(await h.http.post("/admin/peers", json={"node_id": bad}), 400, "bad_request")
        refused(await h.http.post("/admin/peers", json={"node_id": NODE}), 422, "own_node_id")
        refused(await h.http.get(f"/admin/peers/{OTHER}"), 404, "unknown_peer")
        assert [e for e in h.journaled() if isinstance(e, AddPeerInput)] == [AddPeerInput(PEER)]

    serve(tmp_path, scenario)


def test_a_round_trip_and_clock_offset_show_once_a_heartbeat_comes_back(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER)
        echo = h.clock.mono_ms - 30
        await h.receive(PEER, Heartbeat(7, echo, h.clock.wall_ms + 1_000, 0))
        link = (await h.peer())["link"]
        # RFC 6298's first sample: srtt = rtt, rttvar = rtt / 2; the offset
        # is the peer's wall clock against this node's at the midpoint.
        assert (link["rtt_ms"], link["rtt_variation_ms"], link["rtt_samples"]) == (30, 15, 1)
        assert link["clock_offset_ms"] == 1_000 + 15
        assert link["state"] == "not_linked"

    serve(tmp_path, scenario)


def test_posting_a_bond_sends_the_request_to_the_peer(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER)
        refused(
            await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 1}),
            422,
            "insufficient_capital",
        )
        await fund(h, 10_000)
        posted = await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 4_000})
        assert posted.status_code == 201, posted.text
        result = posted.json()
        assert (result["bond_id"], result["status"], result["asset"]) == (1, "sent", "USD")
        request = BondRequest(1, "USD", 4_000, False)
        assert [(s.peer, s.message) for s in h.sent if isinstance(s.message, BondRequest)] == [
            (PEER, request)
        ]
        assert result["bonds"]["outgoing"] == {
            "bond_id": 1,
            "amount_minor": 4_000,
            "withdraw": False,
            "paid": False,
        }
        # One request at a time per pair: the next waits behind it.
        second = (await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 1_000})).json()
        assert (second["bond_id"], second["status"]) == (2, "queued")
        # The capital behind both is held: 5,000 is left to post.
        body = refused(
            await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 5_001}),
            422,
            "insufficient_capital",
        )
        assert body["available_minor"] == 5_000
        # The peer asks for the money, the rail pays, the peer books it.
        await h.receive(PEER, BondAnswer(1, "awaiting_funds"))
        assert [(p.peer, p.purpose, p.ref, p.amount) for p in h.paid] == [(PEER, "bond", 1, 4_000)]
        await h.receive(PEER, BondAnswer(1, ""))
        peer = await h.peer()
        assert peer["bonds"]["posted_minor"] == 4_000
        assert peer["exposure"]["owed_to_peer_cap_minor"] == exposure_cap(
            4_000, CONFIG.clearing.exposure_multiple_percent
        )
        assert peer["bonds"]["outgoing"]["bond_id"] == 2  # sent once the first was answered
        refused(
            await h.http.post("/admin/bonds", json={"peer": OTHER, "amount": 1}),
            404,
            "unknown_peer",
        )
        refused(
            await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 0}), 400, "bad_request"
        )

    serve(tmp_path, scenario)


def test_a_withdrawal_beyond_what_is_posted_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER)
        await fund(h, 10_000)
        await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 4_000})
        await h.receive(PEER, BondAnswer(1, ""))
        before, bonds_before = await h.state_hash(), h.journaled()
        body = refused(
            await h.http.post("/admin/bonds/withdrawals", json={"peer": PEER, "amount": 4_001}),
            422,
            "withdraw_beyond_posted",
        )
        assert (body["posted_minor"], body["withdrawing_minor"]) == (4_000, 0)
        assert await h.state_hash() == before
        assert h.journaled() == bonds_before
        taken = await h.http.post("/admin/bonds/withdrawals", json={"peer": PEER, "amount": 1_000})
        assert taken.status_code == 201, taken.text
        assert (taken.json()["status"], taken.json()["withdraw"]) == ("sent", True)
        assert h.sent[-1].message == BondRequest(2, "USD", 1_000, True)
        # What is being withdrawn already cannot be asked for again.
        body = refused(
            await h.http.post("/admin/bonds/withdrawals", json={"peer": PEER, "amount": 3_001}),
            422,
            "withdraw_beyond_posted",
        )
        assert body["withdrawing_minor"] == 1_000
        assert h.journaled()[-1] == BondInput(PEER, 1_000, True)

    serve(tmp_path, scenario)


def test_unanswered_bond_requests_are_bounded(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER)
        await fund(h, 10_000)
        for _ in range(MAX_PENDING_BOND_REQUESTS):
            posted = await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 1})
            assert posted.status_code == 201, posted.text
        refused(
            await h.http.post("/admin/bonds", json={"peer": PEER, "amount": 1}),
            422,
            "bond_requests_pending",
        )
        inputs = [e for e in h.journaled() if isinstance(e, BondInput)]
        assert len(inputs) == MAX_PENDING_BOND_REQUESTS

    serve(tmp_path, scenario)


def test_a_peers_bond_counts_only_once_its_receipt_is_confirmed(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER, OTHER)
        answers = await h.receive(PEER, BondRequest(1, "USD", 2_500, False))
        assert [e.message for e in answers if isinstance(e, Send)] == [
            BondAnswer(1, "awaiting_funds")
        ]
        peer = await h.peer()
        assert peer["bonds"]["claim"] == {"bond_id": 1, "amount_minor": 2_500}
        assert (peer["bonds"]["held_minor"], peer["exposure"]["cap_minor"]) == (0, 0)
        assert peer["locks"]["quota_locks"] == 0  # a claim alone grants no quota
        receipt = {"peer": PEER, "bond_id": 1, "asset": "USD", "amount": 2_500}
        confirmed = await h.http.post("/admin/bonds/receipts", json=receipt)
        assert confirmed.status_code == 201, confirmed.text
        result = confirmed.json()
        assert result["status"] == "booked"
        cap = exposure_cap(2_500, CONFIG.clearing.exposure_multiple_percent)
        assert (result["bonds"]["held_minor"], result["exposure"]["cap_minor"]) == (2_500, cap)
        assert h.sent[-1].message == BondAnswer(1, "")
        peer = await h.peer()
        quota = lock_quota(2_500, 1_000, CONFIG.clearing.quota)
        assert (peer["locks"]["quota_locks"], peer["locks"]["quota_notional_minor"]) == (
            quota.max_locks,
            quota.max_lock_notional,
        )
        assert peer["bonds"]["collateral_minor"] == 2_500
        assert peer["bonds"]["last_answer"] == {"bond_id": 1, "outcome": "booked"}
        assert peer["bonds"]["claim"] is None
        collateral = AccountKey(f"collateral:{PEER}", AssetCode("USD"))
        held = await h.runtime.read(lambda core: core.context.ledger.balance(collateral))
        assert held == 2_500
        # A receipt is confirmed once; the bond asset only.
        before = h.journaled()
        refused(await h.http.post("/admin/bonds/receipts", json=receipt), 409, "receipt_repeated")
        wrong = {**receipt, "bond_id": 2, "asset": "EUR"}
        body = refused(await h.http.post("/admin/bonds/receipts", json=wrong), 422, "wrong_asset")
        assert body["bond_asset"] == "USD"
        assert h.journaled() == before
        # Money may arrive before the claim: it counts when the claim comes.
        early = {"peer": OTHER, "bond_id": 1, "asset": "USD", "amount": 700}
        kept = (await h.http.post("/admin/bonds/receipts", json=early)).json()
        assert (kept["status"], kept["bonds"]["held_minor"]) == ("awaiting_claim", 0)
        assert kept["bonds"]["receipts"] == [{"bond_id": 1, "asset": "USD", "amount_minor": 700}]
        await h.receive(OTHER, BondRequest(1, "USD", 700, False))
        assert (await h.peer(OTHER))["bonds"]["held_minor"] == 700
        # Money that is not what was claimed goes back, and the claim is refused.
        await h.receive(PEER, BondRequest(2, "USD", 1_000, False))
        other_terms = {"peer": PEER, "bond_id": 2, "asset": "USD", "amount": 999}
        returned = (await h.http.post("/admin/bonds/receipts", json=other_terms)).json()
        assert (returned["status"], returned["bonds"]["held_minor"]) == ("returned", 2_500)
        assert (h.paid[-1].purpose, h.paid[-1].amount) == ("bond_return", 999)

    serve(tmp_path, scenario)


def test_receipts_that_would_pass_a_balances_range_are_refused(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER)
        largest = 10**18  # the most one request may carry
        for bond_id in range(1, 10):
            receipt = {"peer": PEER, "bond_id": bond_id, "asset": "USD", "amount": largest}
            kept = await h.http.post("/admin/bonds/receipts", json=receipt)
            assert kept.status_code == 201, kept.text
        before = h.journaled()
        receipt = {"peer": PEER, "bond_id": 10, "asset": "USD", "amount": largest}
        answer = await h.http.post("/admin/bonds/receipts", json=receipt)
        refused(answer, 422, "amount_out_of_range")
        assert h.journaled() == before

    serve(tmp_path, scenario)


def test_a_request_the_core_refuses_after_all_gets_its_refusal(tmp_path: Path) -> None:
    """The API checks what the core checks before submitting; should the two
    ever differ, the core's refusal (the counter it moved) is the answer."""

    async def scenario(h: Harness) -> None:
        with pytest.raises(ApiError) as refusal:
            await submit_checked(h.node, BondInput(OTHER, 5, False), BOND_REFUSALS)
        assert (refusal.value.status_code, refusal.value.code) == (422, "bond_request_invalid")
        await add(h, PEER)
        with pytest.raises(ApiError) as refusal:
            await submit_checked(h.node, ReinstateInput(PEER), REINSTATE_REFUSALS)
        assert (refusal.value.status_code, refusal.value.code) == (409, "not_suspended")

    serve(tmp_path, scenario)


def test_a_suspended_peer_is_reinstated_and_one_that_is_not_is_refused(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER, OTHER, THIRD)
        before = await h.state_hash()
        refused(await h.http.post(f"/admin/peers/{PEER}/reinstate"), 409, "not_suspended")
        refused(await h.http.post(f"/admin/peers/{NODE}/reinstate"), 404, "unknown_peer")
        assert await h.state_hash() == before
        assert not any(isinstance(e, ReinstateInput) for e in h.journaled())
        # Two other peers declare PEER in default: the quorum suspends it.
        for claimant in (OTHER, THIRD):
            await h.receive(claimant, DefaultNotice(PEER, 0, 0))
        defaults = (await h.peer())["defaults"]
        assert (defaults["suspended"], defaults["reason"]) == (True, "notices")
        assert defaults["declared_by"] == [OTHER, THIRD]
        listed = (await h.http.get("/admin/peers")).json()
        assert [p["defaults"]["suspended"] for p in listed] == [True, False, False]
        answer = await h.http.post(f"/admin/peers/{PEER}/reinstate")
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["peer"], result["suspended_for"], result["reversed_claims"]) == (
            PEER,
            "notices",
            [],
        )
        assert result["status"]["defaults"]["suspended"] is False
        assert result["status"]["defaults"]["declared_by"] == []
        assert h.journaled()[-1] == ReinstateInput(PEER)
        refused(await h.http.post(f"/admin/peers/{PEER}/reinstate"), 409, "not_suspended")

    serve(tmp_path, scenario)


def test_calls_without_the_operators_token_get_401_and_change_nothing(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await add(h, PEER)
        await fund(h, 10_000)
        before = h.journaled()
        calls = [
            ("GET", "/admin/peers", None),
            ("GET", f"/admin/peers/{PEER}", None),
            ("POST", "/admin/peers", {"node_id": OTHER}),
            ("POST", f"/admin/peers/{PEER}/reinstate", None),
            ("POST", "/admin/bonds", {"peer": PEER, "amount": 1}),
            ("POST", "/admin/bonds/withdrawals", {"peer": PEER, "amount": 1}),
            (
                "POST",
                "/admin/bonds/receipts",
                {"peer": PEER, "bond_id": 1, "asset": "USD", "amount": 1},
            ),
            # A body the API would refuse is still refused for the token
            # first: a caller without it learns nothing of what one holds.
            ("POST", "/admin/deposits", {"trader_id": "t", "asset": "USD", "amount": "1"}),
            ("POST", "/admin/fund", {"asset": "USD", "amount": -1, "extra": 1}),
            ("POST", "/admin/bonds", {"peer": "not a peer"}),
            ("GET", "/admin/ledger?owner_prefix=" + "x" * 300, None),
        ]
        for authorization in (None, "Bearer wrong", "Basic b3BlcmF0b3I="):
            headers = {} if authorization is None else {"authorization": authorization}
            for method, path, body in calls:
                request = h.http.build_request(method, path, json=body, headers=headers)
                if authorization is None:
                    del request.headers["authorization"]
                answer = await h.http.send(request)
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["code"] and answer.json()["message"]
        assert h.journaled() == before
        assert [e for e in h.sent if isinstance(e.message, BondRequest)] == []

    serve(tmp_path, scenario)


def test_the_operator_commands_work_against_a_real_node(tmp_path: Path) -> None:
    from test_node_process import new_node, start, stop  # noqa: PLC0415 - the suite's node helpers

    from datn.cli.main import main  # noqa: PLC0415

    running = start(new_node(tmp_path))
    runner = CliRunner()
    at = ["admin", "--node", str(running.folder)]

    def datn(*args: str, status: int = 0) -> str:
        result = runner.invoke(main, [*at, *args])
        assert result.exit_code == status, result.output
        return result.output

    try:
        assert "added" in datn("add-peer", PEER)
        assert "a peer already" in datn("add-peer", PEER)
        assert "refused (400 bad_request)" in datn("add-peer", "nope", status=1)
        header, row = datn("peers").splitlines()
        assert header.split()[:4] == ["node_id", "link", "rtt_ms", "offset_ms"]
        assert row.split()[:4] == [PEER, "not_linked", "-", "-"]
        detail = datn("peers", PEER)
        assert "bonds" in detail.splitlines() and "  held_minor" in detail
        datn("fund", "USD", "10000")
        posted = json.loads(datn("bond", "post", PEER, "4000", "--json"))
        assert (posted["bond_id"], posted["status"]) == (1, "sent")
        refusal = datn("bond", "withdraw", PEER, "1", status=1)
        assert "refused (422 withdraw_beyond_posted)" in refusal
        confirmed = datn("bond", "confirm", PEER, "1", "USD", "2500")
        assert "awaiting_claim" in confirmed and "bond held from the peer: 0" in confirmed
        assert "refused (409 not_suspended)" in datn("reinstate", PEER, status=1)
        shown = json.loads(datn("peers", PEER, "--json"))
        assert shown["bonds"]["outgoing"]["amount_minor"] == 4_000
        assert shown["bonds"]["receipts"] == [{"bond_id": 1, "asset": "USD", "amount_minor": 2_500}]
        assert json.loads(datn("peers", "--json"))[0]["node_id"] == PEER
    finally:
        stop(running)

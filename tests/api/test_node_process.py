"""A real node process on 127.0.0.1: the operator creates a trader, funds
it, the trader trades through the signed HTTP API, and SIGKILL at random
moments loses nothing that was acknowledged."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import struct
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodes import Running, make_trader, new_node, node, order, start, stop

from datn import __version__
from datn.api.client import AdminClient, TraderClient
from datn.api.metrics import samples
from datn.api.stream import MAX_SESSIONS_PER_TRADER
from datn.api.transport import REQUEST_TIMEOUT_S
from datn.protocol.effects import CORE_LOGIC_VERSION

__all__ = ["node"]  # the fixture, used by name


@pytest.mark.parametrize("node", ["asyncio", "uvloop"], indirect=True)
def test_a_trader_trades_through_the_signed_api(node: Running) -> None:
    alice = make_trader(node, "alice", 0, 100)
    bob = make_trader(node, "bob", 10_000_000, 0)
    placed = alice.request("POST", "/v1/orders", order("s1", "sell", 10, 5_000))
    assert placed.status_code == 201, placed.text
    sell = placed.json()
    assert (sell["status"], sell["quantity_lots"], sell["side"]) == ("new", 10, "sell")
    bought = bob.request("POST", "/v1/orders", order("b1", "buy", 4, 5_000, time_in_force="ioc"))
    assert bought.status_code == 201 and bought.json()["status"] == "filled"
    # A retry returns the original order, not a second one.
    again = bob.request("POST", "/v1/orders", order("b1", "buy", 4, 5_000, time_in_force="ioc"))
    assert again.status_code == 200 and again.json()["order_id"] == bought.json()["order_id"]
    # A market order given no time in force is IOC (a limit order's default,
    # GTC, is one a market order cannot have); a retry has the same terms.
    market = order("m1", "buy", 1, None, type="market")
    taken = bob.request("POST", "/v1/orders", market)
    assert taken.status_code == 201, taken.text
    assert (taken.json()["time_in_force"], taken.json()["status"]) == ("ioc", "filled")
    assert bob.request("POST", "/v1/orders", market).json()["order_id"] == taken.json()["order_id"]
    seen = alice.request("GET", f"/v1/orders/{sell['order_id']}").json()
    assert (seen["status"], seen["filled_lots"]) == ("partially_filled", 5)
    fills = bob.request("GET", "/v1/executions").json()
    assert [(f["quantity_lots"], f["price_ticks"]) for f in fills] == [(1, 5_000), (4, 5_000)]
    # Paged: the next page starts before the last one listed's cursor.
    first = bob.request("GET", "/v1/executions?limit=1").json()
    after = bob.request("GET", f"/v1/executions?limit=1&before={first[0]['cursor']}").json()
    assert [f["execution_id"] for f in first + after] == [f["execution_id"] for f in fills]
    end = bob.request("GET", f"/v1/executions?before={after[0]['cursor']}").json()
    assert end == []
    balances = {b["asset"]: b for b in bob.request("GET", "/v1/balances").json()}
    assert balances["USD"]["balance"] == 10_000_000 - 5 * 5_000
    # Another trader's order is not found; a cancel of it is refused.
    assert bob.request("GET", f"/v1/orders/{sell['order_id']}").status_code == 404
    assert bob.request("DELETE", f"/v1/orders/{sell['order_id']}").status_code == 404
    book = alice.request("GET", "/v1/book/XYZ").json()
    assert book["asks"] == [
        {"price_ticks": 5_000, "quantity_lots": 5, "local_lots": 5, "network_lots": 0}
    ]
    assert book["bids"] == []
    # The trade feed, newest first: both trades, made at this node's book.
    feed = alice.request("GET", "/v1/trades/XYZ").json()
    assert [(t["node"], t["price_ticks"], t["quantity_lots"]) for t in feed] == [
        (node.node_id, 5_000, 1),
        (node.node_id, 5_000, 4),
    ]
    assert len(alice.request("GET", "/v1/trades/XYZ?limit=1").json()) == 1
    for bad in ("/v1/trades/XYZ?limit=0", "/v1/trades/XYZ?limit=1001"):
        assert alice.request("GET", bad).status_code == 400
    assert alice.request("GET", "/v1/trades/NOPE").json()["code"] == "unknown_product"
    tape = alice.request("GET", "/v1/prints/XYZ").json()
    assert tape["reference_price_ticks"] == 5_000  # the opening reference: no quorum of sources yet
    assert alice.request("GET", "/v1/book/NOPE").json()["code"] == "unknown_product"
    cancelled = alice.request("DELETE", f"/v1/orders/{sell['order_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    listed = alice.request("GET", "/v1/orders?client_order_id=s1").json()
    assert listed[0]["status"] == "cancelled" and listed[0]["filled_lots"] == 5
    # The node runs on the loop its config names, and paces its garbage
    # collector's full scans.
    loop = tomllib.loads((node.folder / "datn.toml").read_text())["node"]["event_loop"]
    assert f"({loop} loop)" in (node.folder / "node.log").read_text()
    assert "datn_full_collections_total " in node.admin.http.get("/metrics").text


def test_bad_requests_get_a_4xx_with_a_code_and_change_nothing(node: Running) -> None:
    alice = make_trader(node, "alice", 1_000, 0)
    refusals = [
        (alice.request("POST", "/v1/orders", {"client_order_id": "x"}), 400, "bad_request"),
        (alice.request("POST", "/v1/orders", order("x", "buy", 1, None)), 400, "price_required"),
        (alice.request("POST", "/v1/orders", order("x", "buy", 0, 5)), 400, "bad_request"),
        (alice.request("POST", "/v1/orders", order("x", "hold", 1, 5)), 400, "bad_request"),
        (
            alice.request("POST", "/v1/orders", {**order("x", "buy", 1, 5), "product": "NOPE"}),
            404,
            "unknown_product",
        ),
        (alice.request("POST", "/v1/orders", order("big", "buy", 10, 5_000)), 422, None),
        (alice.request("GET", "/v1/orders/999999"), 404, "unknown_order"),
        # Unknown paths, the OpenAPI router's among them, answer JSON too.
        (alice.http.get("/v1/nope"), 404, "not_found"),
        (alice.http.get("/schema/nope"), 404, "not_found"),
        (node.admin.http.get("/schema/nope"), 404, "not_found"),
    ]
    # Bodies the JSON decoder cannot read as text, or follow to their end.
    for body in (b'{"client_order_id": "\xff"}', b"[" * 30_000 + b"]" * 30_000):
        headers = {
            **alice.signer.headers("POST", "/v1/orders", body),
            "content-type": "application/json",
        }
        sent = alice.http.post("/v1/orders", content=body, headers=headers)
        refusals.append((sent, 400, "bad_request"))
    for response, status, code in refusals:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["message"] and (code is None or body["code"] == code), body
    # The rejected order is remembered: the retry gets the same answer.
    retry = alice.request("POST", "/v1/orders", order("big", "buy", 10, 5_000))
    assert retry.status_code == 422 and retry.json()["code"] == refusals[5][0].json()["code"]
    from datn.api.auth import sign  # noqa: PLC0415

    body = json.dumps(order("r1", "buy", 1, 1, time_in_force="ioc")).encode()
    stamp = str(int(time.time() * 1_000))
    headers = {
        "datn-key": alice.key_id,
        "datn-timestamp": stamp,
        "datn-signature": sign(alice.secret, stamp, "POST", "/v1/orders", body),
        "content-type": "application/json",
    }
    first = alice.http.post("/v1/orders", content=body, headers=headers)
    replayed = alice.http.post("/v1/orders", content=body, headers=headers)
    assert first.status_code == 201 and replayed.status_code == 401
    assert replayed.json()["code"] == "replayed"
    huge = 10**30
    for method, path in (("DELETE", f"/v1/orders/{huge}"), ("GET", f"/v1/orders/{huge}")):
        answer = alice.request(method, path)
        assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    assert alice.request("GET", f"/v1/orders?before={huge}").status_code == 400
    reused = alice.request("POST", "/v1/orders", order("r1", "sell", 1, 1, time_in_force="ioc"))
    assert reused.status_code == 422 and reused.json()["code"] == "client_order_id_reused"
    unsigned = alice.http.get("/v1/orders")
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "unsigned"
    forged = TraderClient(node.api_url, alice.key_id, "00" * 32).request("GET", "/v1/orders")
    assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    admin = AdminClient(node.admin.http.base_url.__str__(), "wrong")
    assert admin.request("GET", "/admin/status").status_code == 401
    balances = {b["asset"]: b for b in alice.request("GET", "/v1/balances").json()}
    assert balances["USD"]["balance"] == balances["USD"]["available"] == 1_000
    # An order id left empty (or an escaped slash) does not cancel the book.
    kept = alice.request("POST", "/v1/orders", order("kept", "buy", 1, 1))
    assert kept.status_code == 201, kept.text
    # Nor does a misspelt product parameter widen it to every product, nor
    # one named twice, nor one in a body.
    for path in (
        "/v1/orders/",
        "/v1/orders/%2F",
        "/v1/orders?prodcut=XYZ",
        "/v1/orders?product=XYZ&product=XYZ",
    ):
        answer = alice.request("DELETE", path)
        assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    answer = alice.request("DELETE", "/v1/orders", {"product": "XYZ"})
    assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    assert alice.request("GET", f"/v1/orders/{kept.json()['order_id']}").json()["status"] == "new"
    assert alice.request("DELETE", "/v1/orders").status_code == 200
    # A client order id no order can have is a bad request (a NUL, which
    # PostgreSQL cannot even compare, included).
    for value in ("%00", "a%20b", "x" * 65):
        answer = alice.request("GET", f"/v1/orders?client_order_id={value}")
        assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    # Money the node cannot book is refused before anything is kept.
    rich = make_trader(node, "rich", 0, 0)
    for _ in range(9):
        body = {"trader_id": "rich", "asset": "USD", "amount": 10**18}
        paid = node.admin.request("POST", "/admin/deposits", body)
        assert paid.status_code == 201, paid.text
    for path, body, status, code in (
        (
            "/admin/deposits",
            {"trader_id": "rich", "asset": "NOPE", "amount": 7},
            404,
            "unknown_asset",
        ),
        (
            "/admin/deposits",
            {"trader_id": "rich", "asset": "USD", "amount": 10**18},
            422,
            "beyond_maximum",
        ),
        ("/admin/fund", {"asset": "NOPE", "amount": 7}, 404, "unknown_asset"),
        # Money for a trader the operator never created: no one could reach it.
        (
            "/admin/deposits",
            {"trader_id": "ghost", "asset": "USD", "amount": 7},
            404,
            "unknown_trader",
        ),
        (
            "/admin/withdrawals",
            {"trader_id": "ghost", "asset": "USD", "amount": 7},
            404,
            "unknown_trader",
        ),
    ):
        answer = node.admin.request("POST", path, body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    usd = {b["asset"]: b for b in rich.request("GET", "/v1/balances").json()}["USD"]
    assert usd["balance"] == 9 * 10**18
    # To another trader too: what comes in is booked against the account of
    # money from outside, which has a largest total as well. Refused by the
    # API, the core never sees it (its refusal counter does not move).
    make_trader(node, "other", 0, 0)
    body = {"trader_id": "other", "asset": "USD", "amount": 10**18}
    answer = node.admin.request("POST", "/admin/deposits", body)
    assert (answer.status_code, answer.json()["code"]) == (422, "beyond_maximum"), answer.text
    assert "from outside" in answer.json()["message"]
    stats = node.admin.request("GET", "/admin/status").json()["stats"]
    assert stats.get("deposit_refused", 0) == 0
    # A public key no signature could verify against is no key.
    for key in ("00" * 32, "ff" * 32, "01" + "00" * 31):
        body = {"trader_id": "keyless", "public_key": key}
        answer = node.admin.request("POST", "/admin/traders", body)
        assert (answer.status_code, answer.json()["code"]) == (400, "bad_public_key"), answer.text
    # Integers are digits: not 0.0, 6e0 or 1_0, which the framework would read.
    for path in ("/v1/orders?before=0.0", "/v1/orders/6e0", "/v1/executions?limit=1e2"):
        answer = alice.request("GET", path)
        assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    assert alice.request("DELETE", "/v1/orders/1_0").status_code == 400
    assert (
        node.admin.request("GET", "/admin/traders/alice/signed-orders?since_ms=1.0").status_code
        == 400
    )
    # Body values are of their declared types, as on the WebSocket: no
    # "1" or 1.0 for an integer, which the framework would convert.
    for lax in ("1", 1.0):
        body = order("lax", "buy", 1, 1)
        body["quantity_lots"] = lax
        answer = alice.request("POST", "/v1/orders", body)
        assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    unknown = alice.request("GET", "/v1/orders?client_order_id=lax")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_order", unknown.text
    lax_deposit = {"trader_id": "rich", "asset": "USD", "amount": "7"}
    answer = node.admin.request("POST", "/admin/deposits", lax_deposit)
    assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    usd = {b["asset"]: b for b in rich.request("GET", "/v1/balances").json()}["USD"]
    assert usd["balance"] == 9 * 10**18
    # Ids no trader or key can have are refused without a store lookup.
    assert node.admin.request("GET", "/admin/traders/%00/signed-orders").status_code == 400
    revoked = node.admin.request("POST", "/admin/keys/%00/revoke")
    assert revoked.status_code == 404 and revoked.json()["code"] == "unknown_key"


KILLS = int(os.environ.get("DATN_KILLS", "20"))


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Orders flow from two traders; the node is killed with SIGKILL at a
    random moment, KILLS times, and restarted. Every acknowledged order is
    found after with the same id; money and shares are conserved exactly."""
    folder = new_node(tmp_path)
    rng = random.Random(7)
    running = start(folder)
    keys = {}
    for name, usd, xyz in (("alice", 10**12, 10**6), ("bob", 10**12, 10**6)):
        client = make_trader(running, name, usd, xyz)
        keys[name] = (client.key_id, client.secret.hex())
        client.close()
    acknowledged: dict[tuple[str, str], int] = {}
    bodies: dict[tuple[str, str], dict[str, object]] = {}
    sent = 0
    for _ in range(KILLS):
        clients = {name: running.trader(*key) for name, key in keys.items()}
        moment = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < moment:
            name = rng.choice(["alice", "bob"])
            sent += 1
            body = order(
                f"o{sent}",
                rng.choice(["buy", "sell"]),
                rng.randint(1, 5),
                rng.randint(4_990, 5_010),
            )
            try:
                answer = clients[name].request("POST", "/v1/orders", body)
            except Exception:
                break
            if answer.status_code in (200, 201):
                acknowledged[(name, str(body["client_order_id"]))] = answer.json()["order_id"]
                bodies[(name, str(body["client_order_id"]))] = body
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(timeout=10)
        for client in clients.values():
            client.close()
        running.admin.close()
        running = start(folder)
    try:
        assert len(acknowledged) > KILLS, "orders were acknowledged between kills"
        clients = {name: running.trader(*key) for name, key in keys.items()}
        for (name, client_id), order_id in acknowledged.items():
            found = clients[name].request("GET", f"/v1/orders?client_order_id={client_id}")
            assert found.status_code == 200, f"{name}/{client_id} acknowledged, then lost"
            assert found.json()[0]["order_id"] == order_id
        # A retry of an acknowledged order, after any number of restarts, is
        # answered with the original order and places nothing.
        for key in rng.sample(sorted(acknowledged), min(200, len(acknowledged))):
            retried = clients[key[0]].request("POST", "/v1/orders", bodies[key])
            assert retried.status_code == 200, retried.text
            assert retried.json()["order_id"] == acknowledged[key]
        totals = {"USD": 0, "XYZ": 0}
        for client in clients.values():
            for balance in client.request("GET", "/v1/balances").json():
                symbol = "USD" if balance["asset"] == "USD" else "XYZ"
                totals[symbol] += balance["balance"]
        assert totals == {"USD": 2 * 10**12, "XYZ": 2 * 10**6}
    finally:
        stop(running)


POSTGRES_URL = os.environ.get("DATN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def test_a_postgresql_node_trades_by_http_and_websocket_and_survives_a_kill(tmp_path: Path) -> None:
    import psycopg  # noqa: PLC0415

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        if os.environ.get("DATN_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}")
    schema = f"node_{os.getpid()}_{random.Random().randrange(10**9)}"
    folder = new_node(tmp_path, f"{POSTGRES_URL}?schema={schema}")
    running = start(folder)
    try:
        alice = make_trader(running, "alice", 0, 50)
        bob = make_trader(running, "bob", 10_000_000, 0)
        sell = alice.request("POST", "/v1/orders", order("s1", "sell", 10, 5_000)).json()
        assert bob.request("POST", "/v1/orders", order("b1", "buy", 3, 5_000)).status_code == 201
        keys = (alice.key_id, alice.secret.hex())
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(timeout=10)
        running.admin.close()
        running = start(folder)
        alice = running.trader(*keys)
        seen = alice.request("GET", f"/v1/orders/{sell['order_id']}").json()
        assert (seen["status"], seen["filled_lots"]) == ("partially_filled", 3)
        # The WebSocket's order entry and streams, on PostgreSQL as on SQLite
        # (alice's order out of the way: it has time priority at the price).
        assert alice.request("DELETE", "/v1/orders").status_code == 200
        carol = make_trader(running, "carol", 0, 50)
        with ws_session(running, carol) as seller:
            websocket_flow(seller, make_trader(running, "dave", 10_000_000, 0))
        # What the schema's tables take, as the server counts them.
        assert running.admin.request("GET", "/admin/status").json()["store_bytes"] > 0
    finally:
        stop(running)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def concurrent_places(
    node: Running, trader: TraderClient, bodies: list[dict[str, Any]]
) -> list[Any]:
    """POST each of ``bodies`` at once, each signed with its own timestamp
    (the same one twice would be refused as a replay); the answers."""
    import asyncio  # noqa: PLC0415

    from datn.api.auth import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER  # noqa: PLC0415

    now = int(time.time() * 1_000)
    requests = []
    for n, body in enumerate(bodies):
        data = json.dumps(body).encode()
        stamp = str(now - n)
        headers = {
            "content-type": "application/json",
            KEY_HEADER: trader.key_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: trader.signer.sign(stamp, "POST", "/v1/orders", data),
        }
        requests.append((data, headers))

    async def send() -> list[Any]:
        async with httpx.AsyncClient(base_url=node.api_url, timeout=10) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/orders", content=d, headers=h) for d, h in requests)
            )
        return [(a.status_code, a.json()) for a in answers]

    return asyncio.run(send())


def test_retries_sent_at_once_give_one_order_and_the_node_runs_on(node: Running) -> None:
    alice = make_trader(node, "alice", 0, 100)
    # The same order six times at once: one is placed (201), the others
    # are answered with it (200).
    same = concurrent_places(node, alice, [order("same", "sell", 1, 6_000)] * 6)
    assert sorted(status for status, _ in same) == [200] * 5 + [201]
    assert len({answer["order_id"] for _, answer in same}) == 1
    # The same id for other terms at once: one order, the others refused
    # as the reuse they are; before, the refusals were stored under the
    # same id, the commit failed, and the node stopped.
    for attempt in range(3):
        reuse = [order(f"reuse{attempt}", "sell", lots, 6_000) for lots in range(1, 7)]
        answers = concurrent_places(node, alice, reuse)
        placed = [a for status, a in answers if status == 201]
        refused = [a for status, a in answers if status == 422]
        assert len(placed) == 1 and len(refused) == 5, answers
        assert {a["code"] for a in refused} == {"client_order_id_reused"}
        assert {a["order_id"] for a in refused} == {placed[0]["order_id"]}
    # So are a good-till-date order and the same with another expiry, or GTC.
    expiry = int(time.time() * 1_000) + 3_600_000
    gtd = order("gtd", "sell", 1, 6_000, time_in_force="gtd", expire_at_ms=expiry)
    other = {**gtd, "expire_at_ms": expiry + 1}
    gtc = order("gtd", "sell", 1, 6_000)
    answers = concurrent_places(node, alice, [gtd, other, gtc])
    assert sorted(status for status, _ in answers) == [201, 422, 422], answers
    status = node.admin.request("GET", "/admin/status")
    assert status.status_code == 200 and status.json()["snapshot_failures"] == 0
    opened = alice.request("GET", "/v1/orders?open=true").json()
    assert len(opened) == 1 + 3 + 1


def test_a_newcomer_goes_from_nothing_to_a_filled_order_with_the_cli(node: Running) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from datn.cli.main import main  # noqa: PLC0415

    runner = CliRunner()

    def datn(*args: str) -> str:
        result = runner.invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    at = ["admin", "--node", str(node.folder)]
    seller, buyer = node.folder / "seller.json", node.folder / "buyer.json"
    assert "key_id" in datn(*at, "trader-add", "seller", "--save", str(seller))
    datn(*at, "trader-add", "buyer", "--hmac", "--save", str(buyer))
    assert seller.stat().st_mode & 0o777 == 0o600
    # The seller's key is an Ed25519 pair made on this side: the node got
    # only its public half. The buyer's is an HMAC secret the node keeps.
    assert "signing_key" in json.loads(seller.read_text())
    assert "secret" in json.loads(buyer.read_text())
    credited = datn(*at, "deposit", "seller", "XYZ", "10").splitlines()
    assert credited[0].split() == ["trader_id", "asset", "symbol", "amount"]
    assert credited[1].split()[2:] == ["XYZ", "10"]
    # A deposit under the rail's reference, sent twice, credits once.
    wire = [*at, "deposit", "buyer", "USD", "100000", "--reference", "wire-7", "--json"]
    assert json.loads(datn(*wire))["reference"] == "wire-7"
    assert datn(*wire) == datn(*wire)
    datn("trader", "--credentials", str(seller), "place", "sell", "5", "XYZ", "--price", "5000")
    bought = datn(
        "trader",
        "--credentials",
        str(buyer),
        "place",
        "buy",
        "5",
        "XYZ",
        "--price",
        "5000",
        "--json",
    )
    assert json.loads(bought)["status"] == "filled"
    dated = datn(
        "trader", "--credentials", str(buyer), "place", "buy", "1", "XYZ",
        "--price", "4000", "--expire-in", "60", "--json",
    )  # fmt: skip
    assert json.loads(dated)["time_in_force"] == "gtd" and json.loads(dated)["expire_at_ms"]
    table = datn("trader", "--credentials", str(seller), "orders")
    assert "filled" in table.splitlines()[1] and "client_order_id" in table.splitlines()[0]
    # Tables name a product by its symbol, as the trader typed it.
    assert table.splitlines()[0].split()[2] == "product" and " XYZ " in table.splitlines()[1]
    fills = datn("trader", "--credentials", str(buyer), "executions").splitlines()
    assert "product" in fills[0] and " XYZ " in fills[1] and " 5000 " in fills[1]
    held = datn("trader", "--credentials", str(buyer), "balances").splitlines()
    assert any(line.split()[:2] == ["XYZ", "5"] for line in held[1:])
    one = json.loads(
        datn(
            "trader", "--credentials", str(buyer), "orders",
            "--client-id", json.loads(dated)["client_order_id"], "--json",
        )
    )  # fmt: skip
    assert [o["order_id"] for o in one] == [json.loads(dated)["order_id"]]
    # The network book: the dated bid rests, nothing is offered.
    ladder = datn("trader", "--credentials", str(buyer), "book", "XYZ").splitlines()
    assert ladder[0].split()[:3] == ["side", "price_ticks", "quantity_lots"]
    assert [line.split()[:3] for line in ladder[1:]] == [["bid", "4000", "1"]]
    assert json.loads(datn("trader", "--credentials", str(buyer), "book", "XYZ", "--json"))[
        "bids"
    ] == [{"price_ticks": 4000, "quantity_lots": 1, "local_lots": 1, "network_lots": 0}]
    tape = datn("trader", "--credentials", str(buyer), "trades", "XYZ").splitlines()
    assert tape[0].split() == ["at_ms", "node", "price_ticks", "quantity_lots"]
    assert [line.split()[2:] for line in tape[1:]] == [["5000", "5"]]
    printed = datn("trader", "--credentials", str(buyer), "prints", "XYZ")
    assert printed.startswith("XYZ mark: ") and " 5000" in printed.splitlines()[-1]
    unlisted = runner.invoke(main, ["trader", "--credentials", str(buyer), "book", "NOPE"])
    assert unlisted.exit_code == 1 and "unknown_product" in unlisted.output
    balances = json.loads(datn("trader", "--credentials", str(buyer), "balances", "--json"))
    assert {b["asset"]: b["balance"] for b in balances}["USD"] == 100_000 - 5 * 5_000
    # The operator pays the buyer out: at most what it has available.
    too_much = runner.invoke(main, [*at, "withdraw", "buyer", "USD", "75001", "--json"])
    assert too_much.exit_code == 1 and json.loads(too_much.output)["code"] == "beyond_available"
    datn(*at, "withdraw", "buyer", "USD", "70000")
    balances = json.loads(datn("trader", "--credentials", str(buyer), "balances", "--json"))
    assert {b["asset"]: b["balance"] for b in balances}["USD"] == 5_000
    status = json.loads(datn("node", "status", str(node.folder), "--json"))
    assert status["journal_position"] > 0 and status["intake_per_second"] >= 0
    assert status["snapshot_failures"] == 0 and status["commit_p99_ms"] > 0
    assert status["uptime_s"] > 0 and status["cpu_seconds"] >= status["loop_cpu_seconds"] > 0
    assert status["resident_mib"] > 1
    # What the store takes is what its file and log take on disk.
    on_disk = sum(f.stat().st_size for f in node.folder.glob("*.sqlite3*"))
    assert status["store_bytes"] == pytest.approx(on_disk, rel=0.5) and on_disk > 0
    assert status["version"] == __version__ and status["core_logic_version"] == CORE_LOGIC_VERSION
    # The seller's signed order is kept as it signed it, and checks out.
    kept = node.admin.request("GET", "/admin/traders/seller/signed-orders").json()
    assert len(kept) == 1 and kept[0]["valid"] and kept[0]["target"] == "/v1/orders"
    assert json.loads(kept[0]["body"])["side"] == "sell"
    assert node.admin.request("GET", "/admin/traders/buyer/signed-orders").json() == []
    refused = runner.invoke(
        main, ["trader", "--credentials", str(buyer), "place", "buy", "0", "XYZ", "--price", "1"]
    )
    assert refused.exit_code == 1 and "refused (400" in refused.output
    # A market order (no --price) is IOC unless asked otherwise.
    datn(*at, "deposit", "seller", "XYZ", "1")
    datn(*at, "deposit", "buyer", "USD", "10000")
    datn("trader", "--credentials", str(seller), "place", "sell", "1", "XYZ", "--price", "5000")
    market = datn("trader", "--credentials", str(buyer), "place", "buy", "1", "XYZ", "--json")
    assert json.loads(market)["time_in_force"] == "ioc"
    assert json.loads(market)["status"] == "filled"
    # Credentials that cannot be written register no key; help needs no node.
    nowhere = node.folder / "no-such-folder" / "t.json"
    lost = runner.invoke(main, [*at, "trader-add", "ghost", "--save", str(nowhere)])
    assert lost.exit_code == 1 and "cannot write the credentials" in lost.output
    with contextlib.closing(
        sqlite3.connect(f"file:{node.folder / 'node.sqlite3'}?mode=ro", uri=True)
    ) as store:
        query = "SELECT count(*) FROM credentials WHERE trader_id = 'ghost'"
        assert store.execute(query).fetchone() == (0,)
    elsewhere = runner.invoke(main, ["admin", "--node", "/nonexistent", "status", "--help"])
    assert elsewhere.exit_code == 0 and "Usage:" in elsewhere.output
    helped = runner.invoke(main, ["trader", "place", "--help"], env={"DATN_CREDENTIALS": ""})
    assert helped.exit_code == 0 and "Usage:" in helped.output
    nobody = runner.invoke(main, ["trader", "balances"], env={"DATN_CREDENTIALS": ""})
    assert nobody.exit_code == 1 and "give --credentials FILE" in nobody.output
    listed = node.folder / "list.json"
    listed.write_text("[1]")
    bad = runner.invoke(main, ["trader", "--credentials", str(listed), "balances"])
    assert bad.exit_code == 1 and "not a credentials file" in bad.output


def test_a_trader_over_its_rate_gets_429_and_others_are_served(tmp_path: Path) -> None:
    running = start(new_node(tmp_path, rate=(2, 5)))
    try:
        greedy = make_trader(running, "greedy", 0, 0)
        polite = make_trader(running, "polite", 0, 0)
        answers = [greedy.request("GET", "/v1/balances") for _ in range(8)]
        statuses = [a.status_code for a in answers]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["x-ratelimit-limit"] == "2"
        assert polite.request("GET", "/v1/balances").status_code == 200
        # Over the WebSocket the same budget holds for what changes
        # something; a heartbeat is always answered.
        hasty = make_trader(running, "hasty", 0, 100)
        with ws_session(running, hasty) as session:
            for n in range(1, 9):
                body = order(f"h{n}", "sell", 1, 6_000)
                session.send(json.dumps({"op": "place", "id": n, "order": body}))
            # Answers come as each is decided: refusals before the orders
            # placed, which wait for their commit.
            by_id: dict[int, dict[str, Any]] = {}
            while len(by_id) < 8:
                message = json.loads(session.recv(timeout=10))
                if isinstance(message.get("id"), int):
                    by_id[message["id"]] = message
            answers = [by_id[n] for n in range(1, 9)]
            assert [a["ok"] for a in answers[:5]] == [True] * 5, answers
            over = [a for a in answers[5:] if not a["ok"]]
            assert over and all(a["code"] == "rate_limited" for a in over), answers
            assert all(a["retry_after_s"] >= 1 for a in over)
            session.send(json.dumps({"op": "heartbeat", "id": 9}))
            assert next_answer(session, 9)["ok"] is True
            # Subscribing reads the book: a flood of it spends the budget too.
            for n in range(10, 14):
                session.send(json.dumps({"op": "subscribe", "id": n, "product": "XYZ"}))
            codes = [next_answer(session, n).get("code") for n in range(10, 14)]
            assert "rate_limited" in codes, codes
        assert polite.request("GET", "/v1/balances").status_code == 200
        metrics = running.admin.request("GET", "/metrics")
        assert metrics.status_code == 200
        text = metrics.text
        assert (
            "datn_rate_limited_total " in text and 'datn_http_responses_total{status="429"}' in text
        )
        assert "datn_commit_milliseconds_bucket" in text and "datn_journal_position" in text
        # The process's use of the machine, the event loop's thread on its own.
        seen = samples(text)
        assert seen["datn_store_bytes"] > 0
        assert seen["process_cpu_seconds_total"] > 0
        assert seen["process_resident_memory_bytes"] > 1_000_000
        assert seen['datn_thread_cpu_seconds_total{thread="MainThread",mode="user"}'] > 0
    finally:
        stop(running)


@contextlib.contextmanager
def ws_session(running: Running, client: TraderClient, **options: object) -> Iterator[Any]:
    from websockets.sync.client import connect  # noqa: PLC0415

    url = running.api_url.replace("http://", "ws://") + "/v1/ws"
    with connect(url, open_timeout=10) as socket:
        yield authenticated(socket, client, options)


def auth_message(client: TraderClient, **options: object) -> str:
    """A session's first message: ``client``'s signed auth, with ``options``."""
    stamp = str(int(time.time() * 1_000))
    signature = client.signer.sign(stamp, "GET", "/v1/ws", b"")
    return json.dumps(
        {
            "op": "auth",
            "key_id": client.key_id,
            "timestamp": stamp,
            "signature": signature,
            **options,
        }
    )


def authenticated(socket: Any, client: TraderClient, options: dict[str, object]) -> Any:
    socket.send(auth_message(client, **options))
    assert json.loads(socket.recv(timeout=10))["ok"] is True
    return socket


def admitted_in_time(running: Running, client: TraderClient, why: str) -> None:
    """A session of ``client``'s is admitted and answers, within 10 s (the
    node may not have seen the close of an earlier one yet)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with ws_session(running, client) as session:
                session.send(json.dumps({"op": "heartbeat", "id": 1}))
                assert next_answer(session, 1)["ok"] is True
            return
        except AssertionError:
            assert time.monotonic() < deadline, why
            time.sleep(0.05)


def next_answer(socket: Any, request_id: int) -> dict[str, Any]:
    """The answer to ``request_id``, skipping the events before it."""
    while True:
        message = json.loads(socket.recv(timeout=10))
        if message.get("id") == request_id:
            return message


@pytest.mark.parametrize("node", ["asyncio", "uvloop"], indirect=True)
def test_the_websocket_takes_orders_and_streams_events(node: Running) -> None:
    alice = make_trader(node, "alice", 0, 100)
    bob = make_trader(node, "bob", 10_000_000, 0)
    with ws_session(node, alice) as seller:
        websocket_flow(seller, bob)


def test_a_websocket_order_signed_with_an_ed25519_key_is_kept_as_evidence(
    node: Running,
) -> None:
    from nacl.signing import SigningKey  # noqa: PLC0415

    private = SigningKey.generate()
    made = node.admin.request(
        "POST",
        "/admin/traders",
        {"trader_id": "erin", "public_key": private.verify_key.encode().hex()},
    ).json()
    deposit = {"trader_id": "erin", "asset": "XYZ", "amount": 100}
    assert node.admin.request("POST", "/admin/deposits", deposit).status_code == 201
    erin = TraderClient(node.api_url, made["key_id"], signing_key_hex=private.encode().hex())
    # What a trader signs does not name its key: the same public key for
    # another trader would make erin's signed orders evidence of mallory's.
    again = node.admin.request(
        "POST",
        "/admin/traders",
        {"trader_id": "mallory", "public_key": private.verify_key.encode().hex()},
    )
    assert again.status_code == 409 and again.json()["code"] == "public_key_in_use"
    assert made["key_id"] in again.json()["message"]

    def place(request_id: int, body: bytes, stamp: str, signature: str) -> str:
        # The order member's bytes are what was signed, spelt as sent.
        return (
            f'{{"op": "place", "id": {request_id}, "order": {body.decode()}, '
            f'"timestamp": "{stamp}", "signature": "{signature}"}}'
        )

    body = json.dumps(order("e1", "sell", 5, 6_000), indent=1).encode()
    stamp = str(int(time.time() * 1_000))
    signature = erin.signer.sign(stamp, "POST", "/v1/orders", body)
    with ws_session(node, erin) as session:
        session.send(place(1, body, stamp, signature))
        assert next_answer(session, 1)["order"]["status"] == "new"
        # The same signed message again is a replay; a signature over other
        # bytes, or by another key, is refused; each places nothing.
        session.send(place(2, body, stamp, signature))
        assert next_answer(session, 2)["code"] == "replayed"
        other = json.dumps(order("e2", "sell", 5, 6_000)).encode()
        session.send(place(3, other, stamp, signature))
        assert next_answer(session, 3)["code"] == "bad_signature"
        stranger = SigningKey.generate().sign(b"x").signature.hex()
        session.send(place(4, other, stamp, stranger))
        assert next_answer(session, 4)["code"] == "bad_signature"
        # A signed order that gives a key twice reads one way to the node
        # (the last value) and may read another to whoever checks the
        # evidence (the first): refused, nothing kept.
        twice = body.replace(b'"side": "sell"', b'"side": "buy", "side": "sell"')
        assert twice != body
        now = str(int(time.time() * 1_000))
        session.send(place(6, twice, now, erin.signer.sign(now, "POST", "/v1/orders", twice)))
        assert next_answer(session, 6)["code"] == "bad_request"
        # Unsigned, an order is the session's, and is not evidence.
        session.send(json.dumps({"op": "place", "id": 5, "order": order("e3", "sell", 1, 6_000)}))
        assert next_answer(session, 5)["ok"] is True
    placed = [o["client_order_id"] for o in erin.request("GET", "/v1/orders").json()]
    assert sorted(placed) == ["e1", "e3"]
    kept = node.admin.request("GET", "/admin/traders/erin/signed-orders").json()
    assert len(kept) == 1 and kept[0]["valid"] and kept[0]["target"] == "/v1/orders"
    assert kept[0]["body"] == body.decode() and kept[0]["timestamp"] == stamp


def websocket_flow(seller: Any, bob: TraderClient) -> None:
    seller.send(json.dumps({"op": "place", "id": 1, "order": order("s1", "sell", 10, 5_000)}))
    placed = next_answer(seller, 1)
    assert placed["ok"] and placed["order"]["status"] == "new" and placed["new"] is True
    seller.send(json.dumps({"op": "place", "id": 2, "order": order("s1", "sell", 10, 5_000)}))
    assert next_answer(seller, 2)["new"] is False  # the retry is the original order
    bob.request("POST", "/v1/orders", order("b1", "buy", 4, 5_000))
    events = []
    while not any(e.get("event") == "executed" for e in events):
        events.append(json.loads(seller.recv(timeout=10)))
    fill = next(e for e in events if e.get("event") == "executed")
    assert (fill["quantity_lots"], fill["price_ticks"]) == (4, 5_000)
    seller.send(json.dumps({"op": "place", "id": 3, "order": order("x", "sell", 0, 5)}))
    refused = next_answer(seller, 3)
    assert not refused["ok"] and refused["code"] == "bad_request"
    seller.send("not json")
    assert json.loads(seller.recv(timeout=10))["code"] == "bad_request"
    # JSON nested deeper than the decoder follows, around an order or alone.
    seller.send('{"op": "place", "id": 4, "order": ' + "[" * 5_000 + "]" * 5_000 + "}")
    assert json.loads(seller.recv(timeout=10))["code"] == "bad_request"
    # A burst far beyond what the node reads ahead (it stops reading the
    # socket while too many requests wait) is answered whole.
    for n in range(100, 1_100):
        seller.send(json.dumps({"op": "heartbeat", "id": n}))
    answered: set[int] = set()
    while len(answered) < 1_000:
        message = json.loads(seller.recv(timeout=10))
        if isinstance(message.get("id"), int) and message["id"] >= 100:
            assert message["ok"], message
            answered.add(message["id"])
    assert answered == set(range(100, 1_100))


def test_a_good_till_date_order_expires_on_time_also_across_a_restart(tmp_path: Path) -> None:
    folder = new_node(tmp_path)
    running = start(folder)
    try:
        alice = make_trader(running, "alice", 10_000_000, 0)
        now_ms = int(time.time() * 1_000)
        refused = [
            alice.request("POST", "/v1/orders", order("g0", "buy", 1, 4_000, time_in_force="gtd")),
            alice.request(
                "POST",
                "/v1/orders",
                {**order("g0", "buy", 1, 4_000), "expire_at_ms": now_ms + 9_000},
            ),
            alice.request(
                "POST",
                "/v1/orders",
                order("g0", "buy", 1, 4_000, time_in_force="gtd", expire_at_ms=now_ms - 1),
            ),
        ]
        assert [r.json()["code"] for r in refused] == [
            "expiry_required",
            "expiry_not_allowed",
            "bad_expiry",
        ]
        soon = alice.request(
            "POST",
            "/v1/orders",
            order("g1", "buy", 2, 4_000, time_in_force="gtd", expire_at_ms=now_ms + 1_500),
        )
        later = alice.request(
            "POST",
            "/v1/orders",
            order("g2", "buy", 3, 4_000, time_in_force="gtd", expire_at_ms=now_ms + 4_000),
        )
        assert soon.status_code == later.status_code == 201, soon.text
        assert soon.json()["time_in_force"] == "gtd" and soon.json()["status"] == "new"
        held = {b["asset"]: b for b in alice.request("GET", "/v1/balances").json()}["USD"]["held"]
        assert held == 5 * 4_000
        retry = alice.request(
            "POST",
            "/v1/orders",
            order("g1", "buy", 2, 4_000, time_in_force="gtd", expire_at_ms=now_ms + 1_500),
        )
        assert (
            retry.status_code in (200, 201) and retry.json()["order_id"] == soon.json()["order_id"]
        )

        def status_of(client: TraderClient, order_id: int) -> str:
            return str(client.request("GET", f"/v1/orders/{order_id}").json()["status"])

        deadline = time.monotonic() + 15
        while status_of(alice, soon.json()["order_id"]) != "expired":
            assert time.monotonic() < deadline, "the first order did not expire"
            time.sleep(0.1)
        assert status_of(alice, later.json()["order_id"]) == "new"
        # The node goes down before the second order's expiry and comes back
        # after it: the order still expires, from the expiry it stored.
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(timeout=10)
        time.sleep(max(0.0, (now_ms + 4_200) / 1_000 - time.time()))
        running = start(folder)
        alice = running.trader(alice.key_id, (alice.secret or b"").hex())
        while status_of(alice, later.json()["order_id"]) != "expired":
            assert time.monotonic() < deadline, "the second order did not expire after the restart"
            time.sleep(0.1)
        usd = {b["asset"]: b for b in alice.request("GET", "/v1/balances").json()}["USD"]
        assert usd["held"] == 0 and usd["available"] == 10_000_000
    finally:
        stop(running)


def test_a_websocket_subscription_streams_the_book_and_the_prints(node: Running) -> None:
    alice = make_trader(node, "alice", 0, 100)
    bob = make_trader(node, "bob", 10_000_000, 0)
    alice.request("POST", "/v1/orders", order("a1", "sell", 10, 5_100))
    with ws_session(node, bob) as watcher:
        watcher.send(json.dumps({"op": "subscribe", "id": 1, "product": "NOPE"}))
        assert next_answer(watcher, 1)["code"] == "unknown_product"
        watcher.send(json.dumps({"op": "subscribe", "id": 2, "product": "XYZ"}))
        seen: list[dict[str, Any]] = []

        def until(found: Any) -> dict[str, Any]:
            while True:
                message = json.loads(watcher.recv(timeout=10))
                seen.append(message)
                if found(message):
                    return message

        book = until(lambda m: m.get("event") == "book")
        assert book["product"] == "XYZ" and book["bids"] == []
        assert [(a["price_ticks"], a["quantity_lots"]) for a in book["asks"]] == [(5_100, 10)]
        assert until(lambda m: m.get("event") == "prints")["last_by_node"] == []
        bob.request("POST", "/v1/orders", order("b1", "buy", 4, 5_100))
        alice.request("POST", "/v1/orders", order("a2", "sell", 1, 5_200))
        book = until(
            lambda m: (
                m.get("event") == "book"
                and len(m["asks"]) == 2
                and m["asks"][0]["quantity_lots"] == 6
            )
        )
        assert [a["price_ticks"] for a in book["asks"]] == [5_100, 5_200]
        printed = until(lambda m: m.get("event") == "prints" and m["last_by_node"])
        assert printed["last_by_node"][0]["price_ticks"] == 5_100
        watcher.send(json.dumps({"op": "unsubscribe", "id": 3, "product": "XYZ"}))
        until(lambda m: m.get("id") == 3)
        alice.request("POST", "/v1/orders", order("a3", "sell", 1, 5_300))
        watcher.send(json.dumps({"op": "heartbeat", "id": 4}))
        time.sleep(0.3)  # past a market-data interval: nothing more may come
        watcher.send(json.dumps({"op": "heartbeat", "id": 5}))
        after = []
        while not after or after[-1].get("id") != 5:
            after.append(json.loads(watcher.recv(timeout=10)))
        assert not any(m.get("event") == "book" for m in after), after


def test_cancel_on_disconnect_and_the_dead_mans_switch(node: Running) -> None:
    alice = make_trader(node, "alice", 0, 100)
    with ws_session(node, alice, cancel_on_disconnect=True) as careful:
        careful.send(json.dumps({"op": "place", "id": 1, "order": order("d1", "sell", 5, 6_000)}))
        first = next_answer(careful, 1)["order"]["order_id"]
    deadline = time.monotonic() + 10
    while alice.request("GET", f"/v1/orders/{first}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline, "cancel on disconnect did not cancel"
        time.sleep(0.05)
    with ws_session(node, alice, dead_man_s=1) as watched:
        watched.send(json.dumps({"op": "place", "id": 1, "order": order("d2", "sell", 5, 6_000)}))
        second = next_answer(watched, 1)["order"]["order_id"]
        while json.loads(watched.recv(timeout=10)).get("event") != "dead_man_cancelled":
            pass
        assert alice.request("GET", f"/v1/orders/{second}").json()["status"] == "cancelled"
        # With nothing more to cancel, the silent client is not told again
        # every second...
        with pytest.raises(TimeoutError):
            watched.recv(timeout=2.5)
        # ...but an order placed meanwhile elsewhere is cancelled, and it is told.
        third = alice.request("POST", "/v1/orders", order("d3", "sell", 5, 6_000)).json()
        while json.loads(watched.recv(timeout=10)).get("event") != "dead_man_cancelled":
            pass
        assert alice.request("GET", f"/v1/orders/{third['order_id']}").json()["status"] == (
            "cancelled"
        )


def test_a_websocket_message_larger_than_an_order_closes_the_socket(node: Running) -> None:
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415
    from websockets.sync.client import connect  # noqa: PLC0415

    from datn.api.stream import MAX_MESSAGE_BYTES  # noqa: PLC0415

    alice = make_trader(node, "alice", 0, 100)
    url = node.api_url.replace("http://", "ws://") + "/v1/ws"
    # Before authenticating and after: the message is refused unread (1009),
    # and the node serves everyone else as before.
    for signed in (False, True):
        with connect(url, open_timeout=10) as socket:
            if signed:
                authenticated(socket, alice, {})
            socket.send("x" * (MAX_MESSAGE_BYTES + 1))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    socket.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with ws_session(node, alice) as session:
        # Just within the limit: read and answered.
        body = order("fits", "sell", 1, 6_000)
        padded = json.dumps({"op": "place", "id": 1, "order": body}) + " " * 60_000
        assert len(padded) <= MAX_MESSAGE_BYTES
        session.send(padded)
        assert next_answer(session, 1)["ok"] is True
        # A field a request does not have is refused, naming the request:
        # a misspelt product must not make a cancel_all cancel every product.
        session.send(json.dumps({"op": "cancel_all", "id": 2, "prodcut": "XYZ"}))
        refused = next_answer(session, 2)
        assert refused["ok"] is False and refused["code"] == "bad_request"
        assert "prodcut" in refused["message"]
        # So is a field of the wrong type, and a string id too long to echo.
        session.send(json.dumps({"op": "cancel", "id": 3, "order_id": "7"}))
        assert next_answer(session, 3)["code"] == "bad_request"
        session.send(b"\x00binary")
        answer = json.loads(session.recv(timeout=10))
        while "ok" not in answer:  # an event of the order above
            answer = json.loads(session.recv(timeout=10))
        assert answer["code"] == "bad_request" and "binary frame" in answer["message"]
        session.send(json.dumps({"op": "heartbeat", "id": "i" * 65}))
        answer = json.loads(session.recv(timeout=10))
        while "ok" not in answer:  # an event of the order above
            answer = json.loads(session.recv(timeout=10))
        assert (answer["id"], answer["code"]) == (None, "bad_request")


def test_a_trader_s_sessions_are_bounded_and_other_traders_still_connect(node: Running) -> None:
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415
    from websockets.sync.client import connect  # noqa: PLC0415

    alice = make_trader(node, "alice", 0, 100)
    bob = make_trader(node, "bob", 1_000, 0)
    url = node.api_url.replace("http://", "ws://") + "/v1/ws"
    with contextlib.ExitStack() as stack:
        sessions = [
            stack.enter_context(ws_session(node, alice)) for _ in range(MAX_SESSIONS_PER_TRADER)
        ]
        # One more for alice is refused, with a code and a close that says why.
        with connect(url, open_timeout=10) as extra:
            extra.send(auth_message(alice))
            refused = json.loads(extra.recv(timeout=10))
            assert refused["ok"] is False and refused["code"] == "too_many_sessions"
            with pytest.raises(ConnectionClosed) as closed:
                extra.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        # Her sessions are served as before, and bob connects.
        sessions[0].send(json.dumps({"op": "heartbeat", "id": 1}))
        assert next_answer(sessions[0], 1)["ok"] is True
        with ws_session(node, bob) as other:
            other.send(json.dumps({"op": "heartbeat", "id": 2}))
            assert next_answer(other, 2)["ok"] is True
        # One of hers closed, a new one is let in.
        sessions.pop().close()
        admitted_in_time(node, alice, "a closed session kept its place")


def test_sessions_dropped_as_they_are_welcomed_give_their_places_back(node: Running) -> None:
    """A client whose connection goes right after its auth (a flaky
    network) must not keep a place: 48 such, then a session is admitted."""
    alice = make_trader(node, "alice", 0, 100)
    port = int(node.api_url.rsplit(":", 1)[1])
    for _ in range(3 * MAX_SESSIONS_PER_TRADER):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(4_096)
        text = auth_message(alice).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        raw.sendall(bytes([0x81, 0xFE]) + struct.pack("!H", len(text)) + mask + masked)
        # Gone at once, with a reset: the welcome meets a closed socket.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    admitted_in_time(node, alice, "the dropped sessions kept their places")


def test_idle_and_slow_connections_are_closed_and_strangers_do_not_fill_the_log(
    node: Running,
) -> None:
    port = int(node.api_url.rsplit(":", 1)[1])
    log = node.folder / "node.log"
    logged_before = len(log.read_text().splitlines())
    # Malformed requests, one connection each: each is answered 400, and
    # the log gets a line for their kind, not one for each.
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"NOT HTTP\r\n\r\n")
            assert raw.recv(64).startswith(b"HTTP/1.1 400")
    # A connection that sends nothing, and one that sends its headers a
    # byte every second: both are closed by the node, while it serves.
    idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(b"GET /v1/products HTTP/1.1\r\n")
    # And one that sends an order's headers and never its body.
    bodiless = socket.create_connection(("127.0.0.1", port), timeout=30)
    bodiless.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    closed: dict[str, float] = {}
    while len(closed) < 3:
        assert time.monotonic() - started < REQUEST_TIMEOUT_S + 10, closed
        assert httpx.get(node.api_url + "/v1/products", timeout=10).status_code == 200
        for name, raw in (("idle", idle), ("slow", slow), ("bodiless", bodiless)):
            if name in closed:
                continue
            if name == "slow":
                with contextlib.suppress(OSError):
                    raw.sendall(b"X")
            raw.settimeout(0.01)
            try:
                if raw.recv(1) == b"":
                    closed[name] = time.monotonic() - started
            except TimeoutError:
                pass
            except OSError:
                closed[name] = time.monotonic() - started
        time.sleep(1)
    for raw in (idle, slow, bodiless):
        raw.close()
    assert all(REQUEST_TIMEOUT_S - 1 <= at <= REQUEST_TIMEOUT_S + 5 for at in closed.values())
    lines = log.read_text().splitlines()[logged_before:]
    invalid = [line for line in lines if "Invalid HTTP request" in line]
    assert 1 <= len(invalid) <= 3, invalid


def test_a_websocket_text_that_is_not_utf8_closes_it_without_a_traceback(node: Running) -> None:
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415
    from websockets.frames import Frame, Opcode  # noqa: PLC0415
    from websockets.sync.client import connect  # noqa: PLC0415

    log = node.folder / "node.log"
    logged_before = len(log.read_text().splitlines())
    url = node.api_url.replace("http://", "ws://") + "/v1/ws"
    for _ in range(5):
        with connect(url, open_timeout=10) as socket:
            # Before any key is asked for: anyone can send it.
            with socket.protocol_mutex:
                socket.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe not text"))
                socket.send_data()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    socket.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert httpx.get(node.api_url + "/v1/products", timeout=10).status_code == 200
    lines = log.read_text().splitlines()[logged_before:]
    assert not [line for line in lines if "Traceback" in line or '"error"' in line], lines


def test_a_session_whose_key_is_revoked_takes_nothing_more_and_closes(node: Running) -> None:
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

    alice = make_trader(node, "alice", 0, 100)
    with ws_session(node, alice) as session:
        session.send(json.dumps({"op": "place", "id": 1, "order": order("r1", "sell", 1, 6_000)}))
        assert next_answer(session, 1)["ok"] is True
        revoked = node.admin.request("POST", f"/admin/keys/{alice.key_id}/revoke")
        assert revoked.status_code == 200
        session.send(json.dumps({"op": "place", "id": 2, "order": order("r2", "sell", 1, 6_000)}))
        answer = next_answer(session, 2)
        assert (answer["ok"], answer["code"]) == (False, "unknown_key")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                session.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    opened = node.admin.request("GET", "/admin/ledger?owner_prefix=trader:alice").json()
    assert {row["symbol"]: row["held"] for row in opened}.get("XYZ") == 1  # r1 alone


def test_an_unsigned_websocket_is_refused(node: Running) -> None:
    from websockets.sync.client import connect  # noqa: PLC0415

    with connect(node.api_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as socket:
        socket.send(json.dumps({"op": "auth", "key_id": "k_x", "timestamp": "1", "signature": "0"}))
        answer = json.loads(socket.recv(timeout=10))
    assert answer["ok"] is False and answer["code"] == "stale_timestamp"
    # A dead man's switch out of range is a bad request, said before any key is checked.
    for dead_man_s in (-1, 3_601):
        with connect(node.api_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
            auth = {"op": "auth", "key_id": "k_x", "timestamp": "1", "signature": "0"}
            ws.send(json.dumps({**auth, "dead_man_s": dead_man_s}))
            answer = json.loads(ws.recv(timeout=10))
        assert answer["code"] == "bad_request" and str(dead_man_s) in answer["message"]

"""``datn admin`` and ``datn trader``: thin clients of a node's APIs, with
readable tables and ``--json`` on every command.

``datn admin`` finds the node's operator API from the node's folder
(``--node DIR``: the addresses it wrote in ``ready.json`` and its
``admin.token``). ``datn admin trader-add ID --save FILE`` makes the
trader an Ed25519 key pair here, registers only its public half with the
node, and writes the trader's credentials file (0600) that
``datn trader --credentials FILE`` reads: the API's address, the key id and
the private key (``--hmac``: an HMAC secret the node keeps too, for tools
that only do HMAC).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import click
import httpx
from nacl.signing import SigningKey

from datn.api.client import AdminClient, TraderClient


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _show(response: httpx.Response, as_json: bool, columns: Sequence[str] | None = None) -> None:
    """Print the answer: JSON as is, or a table; a refusal goes to stderr
    with its code, and the command exits 1."""
    try:
        body: Any = response.json()
    except ValueError:
        body = {"code": "bad_answer", "message": response.text[:200]}
    if response.status_code >= 400:
        if as_json:
            click.echo(json.dumps(body))
        else:
            click.echo(
                f"refused ({response.status_code} {body.get('code')}): {body.get('message')}",
                err=True,
            )
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(body))
        return
    rows = body if isinstance(body, list) else [body]
    if not rows:
        click.echo("(none)")
        return
    if isinstance(rows[0], dict):
        shown = list(columns or rows[0].keys())
        table = [[_cell(row.get(c)) for c in shown] for row in rows]
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(shown)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)))
        for r in table:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    else:
        click.echo(str(body))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _request(
    client: AdminClient | TraderClient, method: str, path: str, body: Any = None
) -> httpx.Response:
    try:
        return client.request(method, path, body)
    except httpx.HTTPError as error:
        _fail(f"the node does not answer: {error}")
        raise AssertionError from error  # unreachable: _fail exits


# ------------------------------------------------------------------ admin


@click.group()
@click.option(
    "--node",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The node's folder (for its ready.json and admin.token).",
)
@click.pass_context
def admin(ctx: click.Context, folder: Path) -> None:
    """The operator's commands, through the node's operator API."""
    # Found when a command first uses it: a command's --help needs no node.
    ctx.obj = _NodeAdmin(folder)


class _Lazy:
    """A client made when a command first uses it (by ``make``), so that a
    command's --help needs no node and no credentials."""

    def __init__(self, make: Callable[[], AdminClient | TraderClient]) -> None:
        self._make = make
        self._client: AdminClient | TraderClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)


class _NodeAdmin(_Lazy):
    """The operator API's client for the node in ``folder``."""

    def __init__(self, folder: Path) -> None:
        super().__init__(lambda: admin_client(folder))
        self.folder = folder

    @property
    def api_url(self) -> str:
        """The node's traders' API."""
        return f"http://127.0.0.1:{_ports(self.folder)['api_port']}"


def _ports(folder: Path) -> dict[str, Any]:
    try:
        ports: Any = json.loads((folder / "ready.json").read_text())
    except (OSError, ValueError):
        _fail(f"no running node in {folder} (start it with: datn node run {folder})")
        raise AssertionError from None  # unreachable: _fail exits
    if not isinstance(ports, dict) or not all(
        isinstance(ports.get(name), int) for name in ("api_port", "admin_port")
    ):
        # The node writes an empty one when its APIs could not start.
        _fail(f"the node in {folder} has not opened its APIs: see its log")
    return dict(ports)


def admin_client(folder: Path) -> AdminClient:
    """A client of the operator API of the node running in ``folder``."""
    ports = _ports(folder)
    try:
        token = (folder / "admin.token").read_text().strip()
    except OSError:
        _fail(f"no admin.token in {folder}")
        raise AssertionError from None  # unreachable: _fail exits
    return AdminClient(f"http://127.0.0.1:{ports['admin_port']}", token)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@admin.command("trader-add")
@click.argument("trader_id")
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the trader's credentials file (0600) for `datn trader --credentials`.",
)
@click.option(
    "--hmac",
    "use_hmac",
    is_flag=True,
    help="An HMAC-SHA256 key (a secret the node keeps too) instead of an Ed25519 key pair.",
)
@json_option
@click.pass_context
def trader_add(
    ctx: click.Context, trader_id: str, save: Path | None, use_hmac: bool, as_json: bool
) -> None:
    """Create TRADER_ID and an API key for it (or another key for it).

    By default an Ed25519 key pair is made here and only its public key is
    sent to the node; the private key goes to the --save file (or is shown
    once). With --hmac the node makes a secret, shown once."""
    body: dict[str, str] = {"trader_id": trader_id}
    private: SigningKey | None = None
    if not use_hmac:
        private = SigningKey.generate()
        body["public_key"] = private.verify_key.encode().hex()
    saved = None
    if save is not None:
        # Made (empty, 0600) before the key is registered: a key the node
        # keeps whose private half could not be written would be lost.
        try:
            saved = os.fdopen(os.open(save, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w")
        except OSError as error:
            _fail(f"cannot write the credentials to {save}: {error.strerror or error}")
    try:
        response = _request(ctx.obj, "POST", "/admin/traders", body)
    except SystemExit:
        _unsave(saved, save)
        raise
    columns = ["trader_id", "key_id", "kind", "secret"]
    if response.status_code != 201:
        _unsave(saved, save)
        _show(response, as_json, columns)
        return
    key = {k: v for k, v in response.json().items() if v is not None}
    if private is not None:
        key["signing_key"] = private.encode().hex()
        columns = ["trader_id", "key_id", "kind", "signing_key"]
    if saved is not None:
        with saved:
            json.dump({"api_url": ctx.obj.api_url, **key}, saved)
        columns = ["trader_id", "key_id", "kind", "saved_to"]
        key["saved_to"] = str(save)
    _show(httpx.Response(201, json=key), as_json, columns)


def _unsave(saved: Any, save: Path | None) -> None:
    """Remove the credentials file made for a key the node did not take."""
    if saved is not None and save is not None:
        saved.close()
        save.unlink(missing_ok=True)


reference_option = click.option(
    "--reference",
    default=None,
    metavar="REF",
    help="Name the movement (the rail's transfer id, say): sent again with the same"
    " REF, it is answered as the first time and made only once.",
)


def _with_reference(body: dict[str, object], reference: str | None) -> dict[str, object]:
    return body if reference is None else {**body, "reference": reference}


def _trader_money(name: str, path: str, help_text: str) -> None:
    """``datn admin NAME TRADER_ID ASSET AMOUNT``: a deposit or a withdrawal."""

    @admin.command(name, help=help_text)
    @click.argument("trader_id")
    @click.argument("asset")
    @click.argument("amount", type=int)
    @reference_option
    @json_option
    @click.pass_obj
    def command(
        client: AdminClient,
        trader_id: str,
        asset: str,
        amount: int,
        reference: str | None,
        as_json: bool,
    ) -> None:
        body = {"trader_id": trader_id, "asset": asset, "amount": amount}
        _show(_request(client, "POST", path, _with_reference(body, reference)), as_json)


_trader_money(
    "deposit",
    "/admin/deposits",
    "Credit AMOUNT of ASSET (a currency, in minor units, or a product symbol, in lots).",
)
_trader_money(
    "withdraw",
    "/admin/withdrawals",
    "Pay AMOUNT of ASSET out to TRADER_ID, from what it has available.",
)


@admin.command()
@click.argument("asset")
@click.argument("amount", type=int)
@reference_option
@json_option
@click.pass_obj
def fund(
    client: AdminClient, asset: str, amount: int, reference: str | None, as_json: bool
) -> None:
    """Add AMOUNT of ASSET to the node's own capital."""
    body = _with_reference({"asset": asset, "amount": amount}, reference)
    _show(_request(client, "POST", "/admin/fund", body), as_json)


@admin.command()
@click.argument("key_id")
@json_option
@click.pass_obj
def revoke(client: AdminClient, key_id: str, as_json: bool) -> None:
    """Revoke an API key: requests signed with it are refused from now on."""
    _show(_request(client, "POST", f"/admin/keys/{quote(key_id, safe='')}/revoke"), as_json)


@admin.command()
@json_option
@click.pass_obj
def status(client: AdminClient, as_json: bool) -> None:
    """The node's status: journal position, commits, orders, locks, counters."""
    response = _request(client, "GET", "/admin/status")
    if as_json or response.status_code >= 400:
        _show(response, as_json)
        return
    for key, value in response.json().items():
        click.echo(f"{key:<22}{_cell(value)}")


def _admin_call(send: Callable[[], httpx.Response]) -> httpx.Response:
    """The answer to ``send`` (an AdminClient method); a node that does not
    answer ends the command."""
    try:
        return send()
    except httpx.HTTPError as error:
        _fail(f"the node does not answer: {error}")
        raise AssertionError from error  # unreachable: _fail exits


PEER_COLUMNS = [
    "node_id",
    "link",
    "rtt_ms",
    "offset_ms",
    "exposure",
    "cap",
    "posted",
    "held",
    "requests",
    "claim",
    "locks",
    "taken_permille",
    "confirmed_permille",
    "settled",
    "unsettled",
    "suspended",
    "claims",
]


def _peer_row(peer: dict[str, Any]) -> dict[str, object]:
    """One line of ``datn admin peers``: the figures an operator scans for."""
    link, exposure, bonds = peer["link"], peer["exposure"], peer["bonds"]
    acceptance, settlement, defaults = peer["acceptance"], peer["settlement"], peer["defaults"]
    claim = bonds["claim"]
    return {
        "node_id": peer["node_id"],
        "link": link["state"],
        "rtt_ms": link["rtt_ms"],
        "offset_ms": link["clock_offset_ms"],
        "exposure": exposure["exposure_minor"],
        "cap": exposure["cap_minor"],
        "posted": bonds["posted_minor"],
        "held": bonds["held_minor"],
        "requests": (bonds["outgoing"] is not None) + len(bonds["queued"]),
        "claim": None if claim is None else f"{claim['bond_id']}:{claim['amount_minor']}",
        "locks": peer["locks"]["open"],
        "taken_permille": acceptance["offers_taken"]["ratio_permille"],
        "confirmed_permille": acceptance["acceptances_confirmed"]["ratio_permille"],
        "settled": settlement["statements_settled"],
        "unsettled": settlement["unsettled_trades"],
        "suspended": defaults["reason"],
        "claims": len(defaults["open_claims"]),
    }


def _show_rows(rows: list[dict[str, object]], columns: Sequence[str]) -> None:
    """Print ``rows`` as :func:`_show` prints an answer's table."""
    _show(httpx.Response(200, json=rows), False, columns)


@admin.command()
@click.argument("node_id", required=False)
@json_option
@click.pass_obj
def peers(client: AdminClient, node_id: str | None, as_json: bool) -> None:
    """Every peer, one line each; or NODE_ID's link, exposure, bonds, locks,
    acceptance ratios, settlement and defaults in full.

    \b
    requests: this node's bond requests the peer has not answered
    claim: the peer's bond request awaiting its money (BOND_ID:AMOUNT),
           booked once `datn admin bond confirm` reports it received
    """
    response = _admin_call(lambda: client.peers(node_id))
    if as_json or response.status_code >= 400:
        _show(response, as_json)
        return
    if node_id is None:
        _show_rows([_peer_row(peer) for peer in response.json()], PEER_COLUMNS)
        return
    peer = response.json()
    sections = [value for value in peer.values() if isinstance(value, dict)]
    width = max(len(key) for section in sections for key in section) + 4
    for name, value in peer.items():
        if not isinstance(value, dict):
            click.echo(f"{name:<{width}}{_cell(value)}")
            continue
        click.echo(name)
        for key, field in value.items():
            click.echo(f"  {key:<{width - 2}}{_cell(field)}")


@admin.command("add-peer")
@click.argument("node_id")
@click.option(
    "--address",
    help="Where the peer listens for links, ws://HOST:PORT (its [net] listen). "
    "Given again for a peer, it replaces the one kept.",
)
@json_option
@click.pass_obj
def add_peer(client: AdminClient, node_id: str, address: str | None, as_json: bool) -> None:
    """Trade with NODE_ID (its public key, 64 hex digits) as a peer, linked at --address."""
    response = _admin_call(lambda: client.add_peer(node_id, address))
    if as_json or response.status_code >= 400:
        _show(response, as_json)
        return
    added = "added" if response.status_code == 201 else "a peer already"
    link = response.json()["link"]
    click.echo(f"{response.json()['node_id']}  {added}, link {link['state']}")


@admin.group()
def bond() -> None:
    """Bonds with peers: post, withdraw, and confirm a peer's bond received."""


BOND_COLUMNS = ["peer", "bond_id", "asset", "amount", "withdraw", "status"]


@bond.command("post")
@click.argument("peer")
@click.argument("amount", type=int)
@reference_option
@json_option
@click.pass_obj
def bond_post(
    client: AdminClient, peer: str, amount: int, reference: str | None, as_json: bool
) -> None:
    """Post AMOUNT more bond (minor units of the bond asset) with PEER, from
    the node's capital (`datn admin fund`)."""
    answer = _admin_call(lambda: client.post_bond(peer, amount, reference))
    _show(answer, as_json, BOND_COLUMNS)


@bond.command("withdraw")
@click.argument("peer")
@click.argument("amount", type=int)
@reference_option
@json_option
@click.pass_obj
def bond_withdraw(
    client: AdminClient, peer: str, amount: int, reference: str | None, as_json: bool
) -> None:
    """Ask PEER for AMOUNT of the bond posted with it back."""
    answer = _admin_call(lambda: client.withdraw_bond(peer, amount, reference))
    _show(answer, as_json, BOND_COLUMNS)


@bond.command("confirm")
@click.argument("peer")
@click.argument("bond_id", type=int)
@click.argument("asset")
@click.argument("amount", type=int)
@json_option
@click.pass_obj
def bond_confirm(
    client: AdminClient, peer: str, bond_id: int, asset: str, amount: int, as_json: bool
) -> None:
    """This node's rail received AMOUNT of ASSET from PEER for its bond
    BOND_ID: the only way a peer's bond counts here."""
    response = _admin_call(lambda: client.confirm_bond(peer, bond_id, asset, amount))
    _show(response, as_json, ["peer", "bond_id", "asset", "amount", "status"])
    if not as_json:
        answer = response.json()
        click.echo(
            f"bond held from the peer: {answer['bonds']['held_minor']}, "
            f"exposure cap: {answer['exposure']['cap_minor']}"
        )


@admin.command()
@click.argument("peer")
@json_option
@click.pass_obj
def reinstate(client: AdminClient, peer: str, as_json: bool) -> None:
    """Trade with suspended PEER again: its open default claims are reversed."""
    response = _admin_call(lambda: client.reinstate(peer))
    _show(response, as_json, ["peer", "suspended_for", "reversed_claims"])


# ------------------------------------------------------------------ trader


@click.group()
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DATN_CREDENTIALS",
    help="The credentials file `datn admin trader-add --save` wrote (or $DATN_CREDENTIALS).",
)
@click.pass_context
def trader(ctx: click.Context, credentials: Path | None) -> None:
    """A trader's commands, signed with its API key."""
    # Read when a command first uses it: a command's --help needs none.
    ctx.obj = _Lazy(lambda: _trader_client(credentials))


def _trader_client(path: Path | None) -> TraderClient:
    if path is None:
        _fail("which trader? give --credentials FILE (or set DATN_CREDENTIALS)")
        raise AssertionError  # unreachable: _fail exits
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return TraderClient(
            data["api_url"],
            data["key_id"],
            data.get("secret"),
            signing_key_hex=data.get("signing_key"),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        _fail(f"{path}: not a credentials file ({error})")
        raise AssertionError from error  # unreachable: _fail exits


ORDER_COLUMNS = [
    "order_id",
    "client_order_id",
    "product",
    "side",
    "type",
    "time_in_force",
    "price_ticks",
    "quantity_lots",
    "filled_lots",
    "status",
    "reason",
]


@trader.command()
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.argument("lots", type=int)
@click.argument("product")
@click.option("--price", type=int, help="Limit price in ticks; without it, a market order.")
@click.option(
    "--tif",
    type=click.Choice(["gtc", "ioc", "fok"]),
    help="Time in force (default: gtc for a limit order, ioc for a market order).",
)
@click.option(
    "--expire-in",
    type=click.IntRange(1, 366 * 86_400),
    help="Good till date: cancel what is left after this many seconds.",
)
@click.option("--client-id", help="Your id for the order (default: a new one); retries reuse it.")
@json_option
@click.pass_obj
def place(
    client: TraderClient,
    side: str,
    lots: int,
    product: str,
    price: int | None,
    tif: str | None,
    expire_in: int | None,
    client_id: str | None,
    as_json: bool,
) -> None:
    """Place an order: SIDE LOTS PRODUCT [--price TICKS] [--expire-in SECONDS]."""
    body: dict[str, object] = {
        "client_order_id": client_id or uuid.uuid4().hex[:16],
        "product": product,
        "side": side,
        "quantity_lots": lots,
        "type": "market" if price is None else "limit",
        # A market order never rests: IOC unless FOK is asked for.
        "time_in_force": tif or ("ioc" if price is None else "gtc"),
    }
    if price is not None:
        body["price_ticks"] = price
    if expire_in is not None:
        body["time_in_force"] = "gtd"
        body["expire_at_ms"] = int(time.time() * 1_000) + expire_in * 1_000
    _show_named(client, _request(client, "POST", "/v1/orders", body), as_json, ORDER_COLUMNS)


@trader.command()
@click.argument("order_id", type=int)
@json_option
@click.pass_obj
def cancel(client: TraderClient, order_id: int, as_json: bool) -> None:
    """Cancel one order."""
    _show(_request(client, "DELETE", f"/v1/orders/{order_id}"), as_json)


@trader.command("cancel-all")
@click.option("--product", help="Only this product's orders.")
@json_option
@click.pass_obj
def cancel_all(client: TraderClient, product: str | None, as_json: bool) -> None:
    """Cancel every open order."""
    path = "/v1/orders" + (f"?{urlencode({'product': product})}" if product else "")
    _show(_request(client, "DELETE", path), as_json)


@trader.command()
@click.option("--open", "open_only", is_flag=True, help="Only orders that may still fill.")
@click.option("--product", help="Only this product's orders.")
@click.option("--client-id", help="Only the order you placed with this client order id.")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@click.pass_obj
def orders(
    client: TraderClient,
    open_only: bool,
    product: str | None,
    client_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Your orders, newest first."""
    query: dict[str, object] = {"limit": limit}
    if open_only:
        query["open"] = "true"
    if product is not None:
        query["product"] = product
    if client_id is not None:
        query["client_order_id"] = client_id
    path = "/v1/orders?" + urlencode(query)
    _show_named(client, _request(client, "GET", path), as_json, ORDER_COLUMNS)


@trader.command()
@click.option("--order-id", type=int, help="Only the fills of this order.")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@click.pass_obj
def executions(client: TraderClient, order_id: int | None, limit: int, as_json: bool) -> None:
    """Your fills, newest first."""
    query: dict[str, object] = {"limit": limit}
    if order_id is not None:
        query["order_id"] = order_id
    _show_named(
        client,
        _request(client, "GET", "/v1/executions?" + urlencode(query)),
        as_json,
        [
            "order_id",
            "trade_id",
            "product",
            "side",
            "price_ticks",
            "quantity_lots",
            "counterparty",
            "at_ms",
        ],
    )


@trader.command()
@json_option
@click.pass_obj
def balances(client: TraderClient, as_json: bool) -> None:
    """Your balances: total, available, and held for open orders (a
    product's lots under its symbol)."""
    _show_named(client, _request(client, "GET", "/v1/balances"), as_json)


@trader.command()
@click.argument("product")
@click.option("--depth", type=click.IntRange(1, 100), default=10, show_default=True)
@json_option
@click.pass_obj
def book(client: TraderClient, product: str, depth: int, as_json: bool) -> None:
    """PRODUCT's network book: asks above, best last; bids below, best
    first; at each price the lots resting at this node (local) and those
    its peers advertise (network)."""
    response = _request(client, "GET", f"/v1/book/{quote(product, safe='')}?depth={depth}")
    if as_json or response.status_code >= 400:
        _show(response, as_json)
        return
    answer = response.json()
    rows = [{"side": "ask", **level} for level in reversed(answer["asks"])]
    rows += [{"side": "bid", **level} for level in answer["bids"]]
    if not rows:
        click.echo(f"{answer['product']}: no orders, here or advertised")
        return
    _show_rows(rows, ["side", "price_ticks", "quantity_lots", "local_lots", "network_lots"])


@trader.command()
@click.argument("product")
@json_option
@click.pass_obj
def prints(client: TraderClient, product: str, as_json: bool) -> None:
    """PRODUCT's mark (what risk checks value it at) and the last price
    each node printed."""
    response = _request(client, "GET", f"/v1/prints/{quote(product, safe='')}")
    if as_json or response.status_code >= 400:
        _show(response, as_json)
        return
    answer = response.json()
    mark = answer["reference_price_ticks"]
    click.echo(f"{answer['product']} mark: {'-' if mark is None else mark} ticks")
    if answer["last_by_node"]:
        _show_rows(answer["last_by_node"], ["node", "price_ticks"])
    else:
        click.echo("no prints yet")


@trader.command()
@click.argument("product")
@click.option("--limit", type=click.IntRange(1, 1_000), default=20, show_default=True)
@json_option
@click.pass_obj
def trades(client: TraderClient, product: str, limit: int, as_json: bool) -> None:
    """PRODUCT's latest trades across the network, newest first: the node
    whose book set each one's price, its price, lots and time (ms)."""
    path = f"/v1/trades/{quote(product, safe='')}?limit={limit}"
    _show(_request(client, "GET", path), as_json, ["at_ms", "node", "price_ticks", "quantity_lots"])


def _show_named(
    client: TraderClient,
    response: httpx.Response,
    as_json: bool,
    columns: Sequence[str] | None = None,
) -> None:
    """:func:`_show`, with each product id in a table named by its symbol
    (the ``product`` column of orders and fills, a position's ``asset``);
    ``--json`` prints the API's answer as it is."""
    if as_json or response.status_code >= 400:
        _show(response, as_json, columns)
        return
    answer = response.json()
    rows = answer if isinstance(answer, list) else [answer]
    symbols = _symbols(client) if rows else {}
    for row in rows:
        if "product_id" in row:
            row["product"] = symbols.get(row["product_id"], row["product_id"])
        if "asset" in row:
            row["asset"] = symbols.get(row["asset"], row["asset"])
    _show(httpx.Response(response.status_code, json=answer), False, columns)


def _symbols(client: TraderClient) -> dict[str, str]:
    """Product id -> symbol, as the node lists them (empty if it cannot say)."""
    response = _request(client, "GET", "/v1/products")
    if response.status_code != 200:
        return {}
    return {p["product_id"]: p["symbol"] for p in response.json()}


@trader.command()
@json_option
@click.pass_obj
def products(client: TraderClient, as_json: bool) -> None:
    """What the node lists."""
    _show(_request(client, "GET", "/v1/products"), as_json)

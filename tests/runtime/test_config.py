"""The node's config file and key: what init writes reads back, and every
bad setting is refused naming the key, the value and what is allowed."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from datn.cli.main import main
from datn.protocol.node import NodeConfig
from datn.runtime.config import (
    ConfigError,
    config_template,
    init_folder,
    load_config,
    read_key,
    settings_from,
    without_password,
)


def settings(**changes: Any) -> dict[str, Any]:
    table = tomllib.loads(config_template())
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        target = table
        for part in path:
            target = target.setdefault(part, {})
        target[key] = value
    return table


def refusal(table: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        settings_from(table, Path("/srv/node"))
    return caught.value


def test_init_writes_a_config_and_a_key_that_read_back(tmp_path: Path) -> None:
    config, identity = init_folder(tmp_path / "n")
    loaded = load_config(config)
    key = read_key(loaded.key_file)
    assert key.node_id == identity.node_id and key.secret == identity.secret
    assert os.stat(loaded.key_file).st_mode & 0o777 == 0o600
    assert loaded.storage == f"sqlite:///{tmp_path / 'n' / 'node.sqlite3'}"
    assert (str(loaded.api), str(loaded.admin)) == ("127.0.0.1:8480", "127.0.0.1:8481")
    assert loaded.core == NodeConfig(loaded.core.risk)  # every core default
    genesis = loaded.genesis(key)
    assert genesis.node_id == identity.node_id and genesis.secret == identity.secret
    assert genesis.config.risk.listed_products == {genesis.products[0].product_id}
    assert genesis.reference_prices == ((genesis.products[0].product_id, 5_000),)


def test_init_never_overwrites_a_node(tmp_path: Path) -> None:
    init_folder(tmp_path)
    with pytest.raises(ConfigError) as caught:
        init_folder(tmp_path)
    assert "exists already" in caught.value.problem
    (tmp_path / "datn.toml").unlink()
    with pytest.raises(ConfigError) as again:
        init_folder(tmp_path)
    assert "a key exists already" in again.value.problem


def test_the_template_shows_every_core_setting_with_what_it_does() -> None:
    text = config_template()
    for field in ("lock_ttl_ms", "max_clock_drift_ms", "settlement_deadline_ms", "price_band_bps"):
        assert f"# {field} = " in text
    assert "may be at most this far ahead" in text  # a field's docstring, as a comment


def test_core_settings_are_read_into_the_node_config() -> None:
    table = settings(core__lock_ttl_ms=400, core__risk__max_open_orders=20)
    table["core"]["clearing"] = {"settlement_cycle_ms": 2_000, "quota": {}}
    read = settings_from(table, Path("/srv/node"))
    assert read.core.lock_ttl_ms == 400 and read.core.risk.max_open_orders == 20
    assert read.core.clearing.settlement_cycle_ms == 2_000


@pytest.mark.parametrize(
    ("changes", "key", "says"),
    [
        ({"node__colour": "red"}, "node.colour", "is not a setting here"),
        ({"core__lock_tll_ms": 5}, "core.lock_tll_ms", "the settings are:"),
        ({"core__risk__max_open_orderz": 5}, "core.risk.max_open_orderz", "not a setting"),
        ({"core__lock_ttl_ms": "fast"}, "core.lock_ttl_ms", "must be a whole number, not 'fast'"),
        ({"core__targeted_routing": 1}, "core.targeted_routing", "must be true or false"),
        ({"core__lock_ttl_ms": -1}, "core.lock_ttl_ms", "-1"),
        ({"core__risk__price_band_bps": 2.5}, "core.risk.price_band_bps", "(or left out)"),
        ({"node__snapshot_every": 5}, "node.snapshot_every", "from 100 to"),
        ({"api__listen": "localhost"}, "api.listen", "HOST:PORT"),
        ({"api__listen": "127.0.0.1:70000"}, "api.listen", "port from 0 to 65535"),
        ({"node__storage": ""}, "node.storage", "non-empty string"),
        ({"node__event_loop": "trio"}, "node.event_loop", "one of uvloop, asyncio, not 'trio'"),
        ({"node__commit_delay_us": 20_000}, "node.commit_delay_us", "from 0 to 10,000"),
        ({"net__peer_messages_per_second": 10}, "net.peer_messages_per_second", "from 100 to"),
        ({"core__risk__listed_products": ["x"]}, "core.risk.listed_products", "not a setting"),
        (
            {"core__collection_window_ms": 500, "core__lock_ttl_ms": 400},
            "core.collection_window_ms",
            "500 is not below lock_ttl_ms = 400",
        ),
        (
            {"core__mark_quorum": 9, "core__max_mark_sources": 4},
            "core.mark_quorum",
            "at most max_mark_sources: 9 > 4",
        ),
        ({"api__listen": "127.0.0.1:\u0662"}, "api.listen", "port from 0 to 65535"),
        ({"net__listen": "127.0.0.1:8\uff10"}, "net.listen", "port from 0 to 65535"),
        # Hosts no resolver could take, each refused here rather than at start.
        ({"api__listen": "a..b:8480"}, "api.listen", "'a..b:8480'"),
        ({"api__listen": ".:8480"}, "api.listen", "an IP address, [IPv6] or a host name"),
        ({"api__listen": f"{'a' * 64}:8480"}, "api.listen", "HOST:PORT"),
        ({"net__listen": "foo bar:8482"}, "net.listen", "HOST:PORT"),
        ({"net__listen": "http://127.0.0.1:8482"}, "net.listen", "HOST:PORT"),
        ({"api__admin_listen": "[[[::1]]]:8481"}, "api.admin_listen", "HOST:PORT"),
        ({"api__admin_listen": "[127.0.0.1]:8481"}, "api.admin_listen", "HOST:PORT"),
        ({"api__admin_listen": "[::1:8481"}, "api.admin_listen", "HOST:PORT"),
        # Control characters reach file names and addresses: refused.
        ({"node__key_file": "a\u0000b"}, "node.key_file", "no control characters"),
        ({"node__storage": "sqlite:///a\u0000b"}, "node.storage", "no control characters"),
        # Servers sharing an address: the second could not serve.
        ({"api__admin_listen": "127.0.0.1:8480"}, "api.admin_listen", "where api.listen listens"),
        ({"net__listen": "127.0.0.1:8481"}, "net.listen", "where api.admin_listen listens"),
        # A storage URL whose address cannot be read.
        ({"node__storage": "postgresql://u@127.0.0.1:99999/db"}, "node.storage", "out of range"),
        ({"node__storage": "postgresql://u@[::1/db"}, "node.storage", "cannot be read"),
    ],
)
def test_a_bad_setting_is_refused_naming_key_value_and_what_is_allowed(
    changes: dict[str, Any], key: str, says: str
) -> None:
    error = refusal(settings(**changes))
    assert error.key == key and says in error.problem


def test_listen_addresses_take_ip_addresses_host_names_and_port_zero_twice() -> None:
    read = settings_from(
        settings(
            api__listen="[::1]:0",
            api__admin_listen="localhost:0",
            net__listen="node-1.example.org:8482",
        ),
        Path("/srv/node"),
    )
    assert (read.api.host, read.admin.host, read.net.host) == (
        "::1",
        "localhost",
        "node-1.example.org",
    )


def test_the_event_loop_is_asyncio_unless_the_config_asks_for_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = settings()
    assert settings_from(table, Path("/srv/node")).event_loop == "asyncio"
    del table["node"]["event_loop"]
    assert settings_from(table, Path("/srv/node")).event_loop == "asyncio"
    chosen = settings_from(settings(node__event_loop="uvloop"), Path("/srv/node"))
    assert chosen.event_loop == "uvloop"
    # Where uvloop is not installed (Windows), a config that asks for it is
    # refused, saying what to do.
    monkeypatch.setattr("datn.runtime.config.uvloop_installed", lambda: False)
    error = refusal(settings(node__event_loop="uvloop"))
    assert error.key == "node.event_loop" and 'use "asyncio"' in error.problem


def test_bad_products_are_refused() -> None:
    table = settings()
    table["products"][0]["kind"] = "swap"
    assert refusal(table).key == "products[0].kind"
    table = settings()
    table["products"][0]["symbol"] = "not a symbol!"
    assert refusal(table).key.startswith("products[0].")
    table = settings()
    table["products"].append(dict(table["products"][0]))
    assert "listed twice" in refusal(table).problem
    table["products"] = []
    assert "at least one product" in refusal(table).problem
    # A reference price beyond the core's bound would fail the first order's
    # risk checks, and stop the node, on every start.
    table = settings()
    table["products"][0]["reference_price_ticks"] = 2**63 - 1
    error = refusal(table)
    assert error.key == "products[0].reference_price_ticks" and "1,000,000,000,000" in error.problem
    # Every refusal names the value, and the bounds it states are the ones it keeps.
    table = settings()
    table["products"][0]["quote_currency"] = "USD\n"
    error = refusal(table)
    assert error.key == "products[0].quote_currency" and "'USD\\n'" in error.problem
    table = settings()
    table["products"][0]["quote_currency"] = "usd"
    error = refusal(table)
    assert (
        error.key == "products[0].quote_currency" and "three capitals, not 'usd'" in error.problem
    )
    for size in (0, 10**7):
        table = settings()
        table["products"][0]["tick_size_minor"] = size
        error = refusal(table)
        assert error.key == "products[0].tick_size_minor"
        assert f"from 1 to 1,000,000, not {size}" in error.problem
    # Assets are named by symbol or currency code: a product may not take a
    # currency's.
    table = settings()
    table["products"][0]["symbol"] = "USD"
    error = refusal(table)
    assert error.key == "products[0].symbol" and "quote currency" in error.problem


def test_products_are_quoted_in_the_bond_currency() -> None:
    # Exposure to a peer counts its cash in the bond's currency and its lots
    # of the products quoted in it: a bond asset no product is quoted in
    # would cap nothing, and a product in another currency would trade
    # outside every peer's bond.
    table = settings()
    table["core"]["clearing"] = {"bond_asset": "USDT"}
    error = refusal(table)
    assert error.key == "core.clearing.bond_asset"
    assert "'USDT'" in error.problem and "(USD)" in error.problem
    table = settings()
    table["products"].append({**table["products"][0], "symbol": "ABC", "quote_currency": "EUR"})
    error = refusal(table)
    assert error.key == "products[1].quote_currency" and "'EUR'" in error.problem
    table["core"]["clearing"] = {"bond_asset": "EUR"}
    assert refusal(table).key == "products[0].quote_currency"
    table["products"][0]["quote_currency"] = "EUR"
    read = settings_from(table, Path("/srv/node"))
    assert read.core.clearing.bond_asset == "EUR"


@pytest.mark.parametrize(
    "address",
    [
        "ws://127.0.0.1:\uff18\uff10",  # full-width digits
        "ws://127.0.0.1:\u0668\u0660",  # Arabic-Indic digits
        "ws://[:::]:80",
        "ws://...:80",
        "ws://-node:80",
        "ws://a..b:80",
        "ws://node-:80",
        "ws://n\u00f6de:80",
    ],
)
def test_a_peer_address_no_link_could_dial_is_refused(address: str) -> None:
    table = settings()
    table["peers"] = [{"node_id": "b" * 64, "address": address}]
    error = refusal(table)
    assert error.key == "peers[0].address" and "ws://HOST:PORT" in error.problem


def test_peer_addresses_links_dial_are_taken() -> None:
    table = settings()
    addresses = ["ws://127.0.0.1:8482", "wss://node-b.example.com:443", "ws://[::1]:9", "ws://b:1"]
    table["peers"] = [
        {"node_id": f"{n:x}" * 64, "address": address} for n, address in enumerate(addresses)
    ]
    read = settings_from(table, Path("/srv/node"))
    assert [p.address for p in read.peers] == addresses


@pytest.mark.parametrize("url", ["mysql://x", "memory:", "sqlite:///", "postgres://", "node.db"])
def test_a_storage_url_the_node_cannot_open_is_refused_naming_the_key(url: str) -> None:
    error = refusal(settings(node__storage=url))
    assert error.key == "node.storage" and repr(url) in error.problem
    assert "sqlite:///FILE" in error.problem and "postgresql://" in error.problem


def test_storage_urls_are_taken_a_relative_file_in_the_node_s_folder() -> None:
    read = settings_from(settings(node__storage="sqlite:///n.sqlite3"), Path("/srv/node"))
    assert read.storage == "sqlite:////srv/node/n.sqlite3"
    for url in ("sqlite:////var/lib/n.sqlite3", "postgresql://u@db:5432/n?schema=a"):
        assert settings_from(settings(node__storage=url), Path("/srv/node")).storage == url


def test_a_file_that_is_not_toml_or_not_there_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "datn.toml"
    bad.write_text("[node\nstorage = 1")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert "is not valid TOML" in caught.value.problem
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nowhere.toml")
    assert "cannot be read" in missing.value.problem
    for encoded in ("[node]\nstorage = 'caf\u00e9'\n".encode("latin-1"), b"\xff\xfe[\x00"):
        bad.write_bytes(encoded)
        with pytest.raises(ConfigError) as garbled:
            load_config(bad)
        assert "is not UTF-8 text" in garbled.value.problem


def test_a_key_others_can_read_or_a_damaged_key_is_refused(tmp_path: Path) -> None:
    init_folder(tmp_path)
    key = tmp_path / "node.key"
    key.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        read_key(key)
    assert "readable by others" in caught.value.problem and "chmod 600" in caught.value.problem
    key.chmod(0o600)
    key.write_text("abc\n")
    with pytest.raises(ConfigError) as damaged:
        read_key(key)
    assert "32 bytes in hexadecimal" in damaged.value.problem


def test_the_cli_inits_and_checks_a_node(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "n"
    made = runner.invoke(main, ["node", "init", str(folder), "--json"])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(main, ["node", "check", str(folder)])
    assert checked.exit_code == 0 and "XYZ" in checked.output
    assert "none yet; the node creates it at its first start" in checked.output
    again = runner.invoke(main, ["node", "init", str(folder)])
    assert again.exit_code == 2 and "exists already" in again.output


def test_the_cli_check_refuses_a_config_listing_the_node_itself(tmp_path: Path) -> None:
    folder = tmp_path / "n"
    config, identity = init_folder(folder)
    with config.open("a") as file:
        file.write(f'\n[[peers]]\nnode_id = "{identity.node_id}"\n')
    checked = CliRunner().invoke(main, ["node", "check", str(folder)])
    assert checked.exit_code == 2
    assert f"peers[0].node_id: {identity.node_id} is this node's own id" in checked.output


def test_a_storage_url_is_shown_without_its_password() -> None:
    shown = without_password("postgresql://datn:s3cret@db.example:5432/n?schema=a")
    assert shown == "postgresql://datn:***@db.example:5432/n?schema=a"
    for url in ("postgresql://datn@db:5432/n", "sqlite:////srv/node/node.sqlite3"):
        assert without_password(url) == url


def test_the_cli_check_names_storage_a_node_could_not_start_on(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "n"
    config, _ = init_folder(folder)
    text = config.read_text()
    missing = tmp_path / "gone" / "node.sqlite3"
    config.write_text(text.replace("sqlite:///node.sqlite3", f"sqlite:///{missing}"))
    checked = runner.invoke(main, ["node", "check", str(folder), "--json"])
    assert checked.exit_code == 2
    assert "node.storage: unavailable" in checked.output and "does not exist" in checked.output
    (folder / "node.sqlite3").write_text("not a database\n" * 100)
    config.write_text(text)
    checked = runner.invoke(main, ["node", "check", str(folder)])
    assert checked.exit_code == 2 and "node.storage: corrupt" in checked.output

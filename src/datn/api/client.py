"""A small client of a node's APIs: signs trader requests as
:mod:`datn.api.auth` describes (for ``datn trader``, tests and benchmarks)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
from nacl.signing import SigningKey

from datn.api.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    sign_ed25519,
)


class Signer:
    """Signs requests with one trader key: Ed25519 (``signing_key_hex``, the
    private key's 32-byte seed) or HMAC (``secret_hex``)."""

    def __init__(
        self, key_id: str, *, secret_hex: str | None = None, signing_key_hex: str | None = None
    ) -> None:
        if (secret_hex is None) == (signing_key_hex is None):
            raise ValueError("sign with either an HMAC secret or an Ed25519 key")
        self.key_id = key_id
        self._secret = None if secret_hex is None else bytes.fromhex(secret_hex)
        self._key = None if signing_key_hex is None else SigningKey(bytes.fromhex(signing_key_hex))

    @classmethod
    def from_credentials(cls, data: dict[str, Any]) -> Signer:
        """From a credentials file's fields (``datn admin trader-add --save``)."""
        return cls(
            data["key_id"], secret_hex=data.get("secret"), signing_key_hex=data.get("signing_key")
        )

    def sign(self, stamp: str, method: str, target: str, body: bytes) -> str:
        if self._key is not None:
            return sign_ed25519(self._key, stamp, method, target, body)
        assert self._secret is not None
        return sign(self._secret, stamp, method, target, body)

    def headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time() * 1_000))
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: self.sign(stamp, method, target, body),
        }


class TraderClient:
    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret_hex: str | None = None,
        timeout_s: float = 10,
        *,
        signing_key_hex: str | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)
        self.key_id = key_id
        self.secret = None if secret_hex is None else bytes.fromhex(secret_hex)
        self.signer = Signer(key_id, secret_hex=secret_hex, signing_key_hex=signing_key_hex)

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        data = b"" if body is None else msgspec.json.encode(body)
        headers = self.signer.headers(method, path, data)
        if body is not None:
            headers["content-type"] = "application/json"
        return self.http.request(method, path, content=data, headers=headers)

    def close(self) -> None:
        self.http.close()


class AdminClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 10) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={"authorization": f"Bearer {token}"},
        )

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, path, json=body)

    def peers(self, node_id: str | None = None) -> httpx.Response:
        """Every peer (a list), or one (``node_id``), as :mod:`datn.api.peers` shows them."""
        path = "/admin/peers" if node_id is None else f"/admin/peers/{quote(node_id, safe='')}"
        return self.request("GET", path)

    def add_peer(self, node_id: str, address: str | None = None) -> httpx.Response:
        body: dict[str, object] = {"node_id": node_id}
        if address is not None:
            body["address"] = address
        return self.request("POST", "/admin/peers", body)

    def post_bond(self, peer: str, amount: int, reference: str | None = None) -> httpx.Response:
        """Post ``amount`` more bond with ``peer`` (once per ``reference``)."""
        return self.request("POST", "/admin/bonds", _referenced(peer, amount, reference))

    def withdraw_bond(self, peer: str, amount: int, reference: str | None = None) -> httpx.Response:
        """Ask ``peer`` for ``amount`` of bond back (once per ``reference``)."""
        body = _referenced(peer, amount, reference)
        return self.request("POST", "/admin/bonds/withdrawals", body)

    def confirm_bond(self, peer: str, bond_id: int, asset: str, amount: int) -> httpx.Response:
        """This node's rail received ``amount`` of ``asset`` for ``peer``'s bond ``bond_id``."""
        body = {"peer": peer, "bond_id": bond_id, "asset": asset, "amount": amount}
        return self.request("POST", "/admin/bonds/receipts", body)

    def reinstate(self, peer: str) -> httpx.Response:
        return self.request("POST", f"/admin/peers/{quote(peer, safe='')}/reinstate")

    def close(self) -> None:
        self.http.close()


def _referenced(peer: str, amount: int, reference: str | None) -> dict[str, object]:
    body: dict[str, object] = {"peer": peer, "amount": amount}
    if reference is not None:
        body["reference"] = reference
    return body

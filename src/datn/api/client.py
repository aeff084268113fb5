"""A small client of a node's APIs: signs trader requests as
:mod:`datn.api.auth` describes (for ``datn trader``, tests and benchmarks)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec

from datn.api.auth import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


class TraderClient:
    def __init__(self, base_url: str, key_id: str, secret_hex: str, timeout_s: float = 10) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)
        self.key_id = key_id
        self.secret = bytes.fromhex(secret_hex)

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        data = b"" if body is None else msgspec.json.encode(body)
        stamp = str(int(time.time() * 1_000))
        headers = {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self.secret, stamp, method, path, data),
        }
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

    def close(self) -> None:
        self.http.close()

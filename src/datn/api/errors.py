"""The API's refusals: an HTTP status with a stable machine-readable code."""

from __future__ import annotations

from litestar.exceptions import HTTPException


class ApiError(HTTPException):
    """A refusal with a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code
        self.message = message
        self.fields = extra
        self.response_headers = headers or {}

"""Every API error is `{"error": "<one line>"}` with a 4xx/5xx status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from regswitch.storage.base import StorageError, StorageUnavailableError

#: Retry-After (s) on a 503 while the database is unreachable: it reconnects
#: within a fraction of a second of coming back.
STORAGE_RETRY_AFTER = "2"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(StorageError)
    async def _storage_error(_: Request, exc: StorageError) -> JSONResponse:
        if isinstance(exc, StorageUnavailableError):
            return error_response(503, str(exc), {"Retry-After": STORAGE_RETRY_AFTER})
        return error_response(500, f"storage: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            # pydantic says "0: JSON decode error": say it in words, with where
            detail = (first.get("ctx") or {}).get("error")
            return error_response(
                400,
                "the request body is not valid JSON"
                + (f" ({str(detail)[:200]})" if detail else "")
                + "; send a JSON object with Content-Type: application/json",
            )
        if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            return error_response(400, "a JSON body is required")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = str(first.get("msg", "invalid request"))
        return error_response(422, f"{where}: {message}" if where else message)

"""The API's error responses: ``{"error": {"code": ..., "message": ..., "field"?: ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("stock_api.errors")


class StockApiError(Exception):
    """Base of the errors this service raises on purpose."""


class StoreError(StockApiError):
    """The document store could not be reached or refused an operation."""


class DuplicateSymbolError(StoreError):
    """A stock with this symbol already exists."""


class ApiError(StockApiError):
    """An error that maps to one HTTP response."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        resp = jsonify({"error": body})
        resp.status_code = self.status
        return resp


def from_validation(
    exc: ValidationError, *, status: int, code: str, what: str
) -> ApiError:
    """Turn the first pydantic error into an ApiError naming the field and the bad value."""
    first = exc.errors(include_url=False)[0]
    if not first["loc"]:  # a rule across fields (e.g. min_price <= max_price)
        return ApiError(status, code, f"{what}: {first['msg'].removeprefix('Value error, ')}")
    field = ".".join(str(part) for part in first["loc"])
    message = f"{what} field '{field}': {first['msg']}"
    if first["type"] not in ("missing", "extra_forbidden") and "input" in first:
        shown = repr(first["input"])
        message += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    if first["type"] == "extra_forbidden":
        message = f"{what} field '{field}' is not allowed"
    return ApiError(status, code, message, field=field)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "route_not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body exceeds the limit of {limit} bytes"
        resp = ApiError(status, code, message).response()
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(StoreError)
    def _store_error(exc: StoreError) -> Response:
        from stock_api.context import services  # here: context imports the store, which us

        log.error("store failure: %s", exc)
        services().dependencies.mark("store", False, type(exc.__cause__ or exc).__name__)
        return ApiError(503, "store_unavailable", "the stock store is unavailable").response()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Details go to the log, never to the client.
        log.exception("unhandled error")
        return ApiError(500, "internal_error", "internal server error").response()

"""Turning a request's body and query string into validated models, or an ApiError."""

from __future__ import annotations

import json
from typing import Any, NoReturn, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from stock_api.errors import ApiError, from_validation
from stock_api.models import SYMBOL_RE

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


_OPENERS = (ord("["), ord("{"))
_CLOSERS = (ord("]"), ord("}"))
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def nesting_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True if ``raw`` opens more than ``limit`` arrays/objects inside each other.

    A linear scan that skips string contents, run before the parser: Python's JSON parser
    recurses per level and fails with RecursionError (a 500) somewhere past ~1,000 levels.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than the brackets it has
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


DRAIN_LIMIT_BYTES = 1_048_576


def _discard(stream: Any, limit: int) -> None:
    left = limit
    try:
        while left > 0 and (chunk := stream.read(min(65_536, left))):
            left -= len(chunk)
    except (OSError, ValueError):
        pass  # the client went away: nothing left to answer


def parse_body(model: type[M], *, max_depth: int = 32) -> M:
    """The JSON object body as ``model``: 415, 400 (not JSON, or nested deeper than
    ``max_depth``), 413 (too big) or 422."""
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type must be application/json (got {request.mimetype or 'none'!r})",
        )
    raw = request.get_data(cache=True)  # werkzeug raises 413 past MAX_CONTENT_LENGTH
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut at the limit without an error (werkzeug's LimitedStream
        # returns the first `limit` bytes): a body that fills the limit was longer. Read
        # and drop a bounded rest, so that the client, still sending, gets the 413 instead
        # of a connection reset; a longer body is cut off.
        _discard(request.input_stream, DRAIN_LIMIT_BYTES)
        raise RequestEntityTooLarge()
    if not raw.strip():
        raise ApiError(400, "invalid_json", "request body is empty; a JSON object is required")
    too_deep = ApiError(400, "too_deep", f"request body nests arrays/objects deeper than the "
                        f"limit of {max_depth} levels")
    if nesting_depth_exceeds(raw, max_depth):
        raise too_deep
    try:
        data: Any = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:  # belt and braces: the scan above should make this unreachable
        raise too_deep from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json",
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ApiError(422, "validation_error", f"request body must be a JSON object, not {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc, status=422, code="validation_error", what="body") from None


def parse_query(model: type[M]) -> M:
    """The query string as ``model``; repeated or unknown parameters are a 400."""
    for key in request.args:
        if len(request.args.getlist(key)) > 1:
            raise ApiError(400, "invalid_query", f"query field '{key}' is given more than once",
                           field=key)
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise from_validation(exc, status=400, code="invalid_query", what="query") from None


def parse_symbol(raw: str) -> str:
    """A path symbol, upper-cased (``aapl`` finds ``AAPL``); 400 if it cannot be one."""
    symbol = raw.upper()
    if not SYMBOL_RE.match(symbol):
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise ApiError(
            400, "invalid_symbol",
            f"'{shown}' is not a valid symbol (1-6 letters/digits starting with a letter, "
            "optional .XX suffix)", field="symbol",
        )
    return symbol

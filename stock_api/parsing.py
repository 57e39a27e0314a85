"""Turning a request's body and query string into validated models, or an ApiError."""

from __future__ import annotations

import json
from typing import Any, NoReturn, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from stock_api.errors import ApiError, from_validation
from stock_api.models import SYMBOL_RE

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(model: type[M]) -> M:
    """The JSON object body as ``model``: 415, 400 (not JSON), 413 (too big) or 422."""
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type must be application/json (got {request.mimetype or 'none'!r})",
        )
    raw = request.get_data(cache=True)  # werkzeug raises 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        raise ApiError(400, "invalid_json", "request body is empty; a JSON object is required")
    try:
        data: Any = json.loads(raw, parse_constant=_reject_constant)
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

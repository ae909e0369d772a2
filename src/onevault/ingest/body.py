"""Reading a JSON request body within a size limit, as sent by fetch() or navigator.sendBeacon()."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from onevault.errors import ApiError
from onevault.ingest.models import InvalidEvent

# sendBeacon() posts strings as text/plain; both carry JSON here.
ACCEPTED_TYPES = ("application/json", "text/plain")
# How many arrays and objects an event may nest: the most orjson, which stores it, serialises.
MAX_DEPTH = 254
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body exceeds the limit of {limit} bytes")


async def read_json(request: Request, limit: int) -> object:
    """The decoded JSON body; 415 for other media types, 413 over `limit` bytes, 400 if malformed or cut,
    422 if nested beyond what the parser can follow (far deeper than MAX_DEPTH)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_TYPES:
        raise ApiError(415, "unsupported content type: send application/json (or text/plain carrying JSON)")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks = bytearray()
    try:
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                raise _too_large(limit)
    except ClientDisconnect:
        # Nothing was stored; the answer goes nowhere but keeps the log and metrics truthful.
        raise ApiError(400, "the client disconnected before sending the whole body") from None
    if not chunks.strip():
        raise ApiError(400, "empty request body: send a JSON object")
    try:
        # What json.loads does with bytes, with a decoder built once.
        return _DECODER.decode(chunks.decode(json.detect_encoding(chunks), "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(422, TOO_DEEP) from None


# Numbers are kept exactly as sent: decimals (and integers beyond 64 bits) as Decimal.
def _integer(text: str) -> int | Decimal:
    return int(text) if len(text) < 19 else Decimal(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=_integer, parse_constant=_no_constant)


def _exact_number(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"cannot serialise {type(value).__name__}")


def serialise(event: object) -> str:
    """The decoded event as compact JSON text, numbers exactly as they were sent."""
    try:
        return orjson.dumps(event, default=_exact_number).decode()
    except orjson.JSONEncodeError as exc:
        # The decoder yields nothing else orjson refuses: only depth and unpaired surrogates remain.
        if "recursion" in str(exc).lower():
            raise InvalidEvent(TOO_DEEP, []) from None
        raise InvalidEvent("strings must be valid Unicode (a lone surrogate was found)", []) from None

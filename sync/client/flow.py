"""The I/O seam of every client flow: requests, bounded answers, typed events, one driver.

Theory of operation (docs/PROTOCOL.md §15):
* A flow is a generator in the style of httpx's ``auth_flow``: it yields a `Request`
  and is sent back the `Response`; it yields a tuple of requests (`Concurrent`) and is
  sent back a tuple of responses in the same order; it yields an `Event` (a past-tense
  fact) and is sent back None.  `drive` runs a flow to completion over any ``send``
  callable and closes it in ``finally``: the CLI, the Desk and the tests share it.
* Answers arrive as raw bytes.  A flow decodes one only through `decode`, which
  bounds it before anything is allocated from it: the transport read at most
  ``Request.max_answer_bytes`` (an answer over it arrives with ``oversized`` set),
  CBOR and JSON nesting is capped, and the result is validated by a wire model of
  `sync.messages`.  Anything else is `ServerMisbehaved`, never a stray decoder error.
* Events carry what the driver must persist; a flow yields the event for an answer
  only after the whole answer was validated, so a rejected answer leaves the stored
  state exactly as it was.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cbor2
from pydantic import BaseModel, ValidationError

from sync.messages import CBOR_MEDIA_TYPE, RAW_BYTES

__all__ = [
    "DEFAULT_BOUNDS",
    "JSON_MEDIA_TYPE",
    "Bounds",
    "Concurrent",
    "Event",
    "Flow",
    "Request",
    "Response",
    "ServerMisbehaved",
    "SyncRefused",
    "decode",
    "drive",
    "expect",
]

JSON_MEDIA_TYPE = "application/json"
PROBLEM_MEDIA_TYPE = "application/problem+json"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a client accepts from a server in one sync run (PROTOCOL §15.9)."""

    max_answer_bytes: int = 8 * 1024 * 1024
    """Any one answer.  An honest feed page of small envelopes is far below it; a page of
    large ones is asked again with fewer items (`pull_flow`), down to one envelope."""
    max_depth: int = 8
    """CBOR/JSON nesting of any answer (the deepest honest answer nests 5 levels)."""
    page_items: int = 500
    """Feed items asked for per page (the server may cap it lower, never higher)."""
    max_pages: int = 20_000
    """Feed pages in one run (10 million envelopes at the default page size)."""
    run_seconds: float = 6 * 3600.0
    """Wall time after which a run stops where its verified progress is (resumed next time)."""
    max_cursor_length: int = 128


DEFAULT_BOUNDS = Bounds()


class SyncRefused(Exception):
    """The server refused a request outright (revoked device, expired invite, ...)."""

    def __init__(self, status: int, code: str | None, detail: str) -> None:
        super().__init__(f"server refused ({status} {code or 'error'}): {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @classmethod
    def from_response(cls, response: Response) -> SyncRefused:
        problem = response.problem()
        return cls(response.status, problem.get("code"), problem.get("detail") or "no detail")


class ServerMisbehaved(Exception):
    """The server answered what a correct server never would (malformed, endless, forged)."""


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request to send (signed with the device key unless ``signed`` is False)."""

    method: str
    path: str
    body: dict[str, Any] | None = None  # sent as JSON
    query: dict[str, str] = field(default_factory=dict)
    signed: bool = True
    content: bytes | None = None  # a body already encoded (instead of ``body``) ...
    content_type: str | None = None  # ... and its media type
    accept: str = JSON_MEDIA_TYPE
    max_answer_bytes: int = DEFAULT_BOUNDS.max_answer_bytes
    """The transport reads at most this many bytes of the answer (then sets ``oversized``)."""

    def encoded(self) -> tuple[bytes, str | None]:
        """The body bytes and their media type."""
        if self.content is not None:
            return self.content, self.content_type
        if self.body is not None:
            return json.dumps(self.body, separators=(",", ":")).encode(), JSON_MEDIA_TYPE
        return b"", None


@dataclass(frozen=True, slots=True)
class Response:
    """An answer as it came off the wire (never more than the request's byte bound)."""

    status: int
    content: bytes = b""
    media_type: str = ""
    oversized: bool = False
    retry_after: str | None = None

    @classmethod
    def of_json(cls, status: int, value: Any) -> Response:
        media = JSON_MEDIA_TYPE if status < 400 else PROBLEM_MEDIA_TYPE
        return cls(status, json.dumps(value).encode(), media)

    @classmethod
    def of_cbor(cls, status: int, value: Any) -> Response:
        return cls(status, cbor2.dumps(value), CBOR_MEDIA_TYPE)

    def problem(self) -> dict[str, str]:
        """``code`` and ``detail`` of an RFC 9457 answer, bounded; empty if it is none."""
        if self.oversized or len(self.content) > 64 * 1024:
            return {}
        try:
            value = json.loads(self.content)
        except (ValueError, RecursionError):
            return {}
        if not isinstance(value, dict):
            return {}
        return {k: str(value[k])[:500] for k in ("code", "detail", "title", "reason") if k in value}

    @property
    def code(self) -> str | None:
        return self.problem().get("code")


Concurrent = tuple[Request, ...]
"""Requests the driver may send at once; the flow gets their responses in the same order."""


class Event:
    """A past-tense fact a flow reports; the driver persists what it names, then renders it."""

    __slots__ = ()


Flow = Generator["Request | Concurrent | Event", "Response | tuple[Response, ...] | None", T]


def expect(response: Response | tuple[Response, ...] | None, *ok: int) -> Response:
    """The response, if its status is one of ``ok``; else the server's refusal."""
    if not isinstance(response, Response):
        raise TypeError("the driver must send a Response back for a Request")
    if response.status not in ok:
        raise SyncRefused.from_response(response)
    return response


def _depth_ok(value: Any, limit: int) -> bool:
    """Whether containers nest at most ``limit`` deep (scalars do not count, as in cbor2)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return True


def _cbor_item(content: bytes, max_depth: int) -> Any:
    """Exactly one CBOR item: bytes after it are refused (as for push bodies, §8.2)."""
    stream = io.BytesIO(content)
    value = cbor2.CBORDecoder(stream, max_depth=max_depth, allow_indefinite=False).decode()
    if stream.tell() != len(content):
        raise ValueError("bytes after the CBOR item")
    return value


def decode(response: Response, model: type[M], *, what: str, max_depth: int = 8) -> M:
    """Decode a 2xx answer as ``model``, bounded; `ServerMisbehaved` naming ``what`` if not."""
    if response.oversized:
        raise ServerMisbehaved(f"{what}: the answer is larger than this client accepts")
    try:
        if response.media_type == CBOR_MEDIA_TYPE:
            # Byte strings must be CBOR byte strings here, not base64url text (§9.1).
            value = _cbor_item(response.content, max_depth)
            return model.model_validate(value, context=RAW_BYTES)
        if response.media_type in (JSON_MEDIA_TYPE, ""):
            value = json.loads(response.content)
            if not _depth_ok(value, max_depth):
                raise ValueError("nested too deeply")
            return model.model_validate(value)
        raise ValueError("unexpected media type")
    except ValidationError as exc:
        raise ServerMisbehaved(
            f"{what}: the answer has the wrong shape ({exc.error_count()} errors)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure: cbor2, json, recursion, memory
        raise ServerMisbehaved(
            f"{what}: the answer does not decode ({type(exc).__name__})"
        ) from None


def drive(
    flow: Flow[T],
    send: Callable[[Request], Response],
    on_event: Callable[[Event], None] = lambda event: None,
    *,
    send_many: Callable[[Concurrent], tuple[Response, ...]] | None = None,
) -> T:
    """Run ``flow`` to completion: requests to ``send``, events to ``on_event``.

    The flow is closed in ``finally`` whatever happens (its own ``finally`` blocks run).
    """
    many = send_many or (lambda requests: tuple(send(r) for r in requests))
    try:
        message = next(flow)
        while True:
            reply: Response | tuple[Response, ...] | None
            if isinstance(message, Event):
                on_event(message)
                reply = None
            elif isinstance(message, tuple):
                reply = many(message)
            else:
                reply = send(message)
            message = flow.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()

"""The one authentication/authorization dependency: signed requests (docs/PROTOCOL.md §7.3).

Order (PROTOCOL §7.3): a route that depends on a signed caller is a `SignedRoute`,
which checks *before any byte of the body is read* that the request carries signature
headers naming a device of the organisation in the path (one indexed lookup); an
unsigned request or an unknown key is refused 401 (``Connection: close``, the body
left unread).  Only then is the body read (bounded while it is read, `server.app`)
and the signature, content digest and nonce verified.

The organisation's recovery key (PROTOCOL §20.4) is no device: its key id is not in the
devices table, so it is looked up in the same statement (``orgs.recovery_key``) and signs
as a caller of role ``"recovery"``, which only ``RecoveryOrMemberCaller`` (read the roster)
and ``RosterSigner`` (list devices, append a roster version) accept.

``SignedCaller`` verifies the RFC 9421 signature of the request against the key
of the device named by ``keyid`` *within the organisation in the path* (so no
id from one organisation is accepted in another's requests), refuses a reused
(keyid, nonce) within the replay window, applies the rate limits keyed by the
verified device and its organisation, and yields a `Caller`.  Routes that need
a coordinator depend on ``CoordinatorCaller`` instead.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.responses import Response

from crypto import VerifyKey
from server.context import ServerContext
from server.db import Batch, fetch, write_tx
from server.deps import get_ctx
from server.errors import ApiError
from server.ratelimit import Hit
from sync.auth import AuthError, peek_key_id, verify_request
from sync.errors import ErrorCode
from sync.messages import b64decode

__all__ = [
    "Caller",
    "CoordinatorCaller",
    "OrgId",
    "PushCaller",
    "RecoveryOrMemberCaller",
    "RosterSigner",
    "SignedCaller",
    "SignedRoute",
    "check_rate",
    "parse_org_id",
    "remember_nonce_in",
]


@dataclass(frozen=True, slots=True)
class Caller:
    org_id: bytes
    device_id: bytes
    signing_key: VerifyKey
    role: str
    state: str
    revoked_after: int | None
    nonce: str = ""
    created: int = 0

    @property
    def is_coordinator(self) -> bool:
        return self.role == "coordinator" and self.state == "admitted"


def parse_org_id(org: str) -> bytes:
    try:
        org_id = b64decode(org)
    except ValueError:
        org_id = b""
    if len(org_id) != 16:
        raise ApiError(ErrorCode.UNKNOWN_ORG, 404, "no such organisation")
    return org_id


async def _org_id_param(
    org: Annotated[str, Path(description="organisation id, 16 bytes base64url", max_length=64)],
) -> bytes:
    return parse_org_id(org)


OrgId = Annotated[bytes, Depends(_org_id_param)]


def check_rate(ctx: ServerContext, *hits: Hit) -> None:
    """Count one request under each (scope, key, limit), in one call to the shared counters
    (one statement or round trip for all scopes); 429 for the first scope over its limit."""
    limited = ctx.limiter.hit_many(*hits)
    if limited is not None:
        ctx.metrics.rate_limited.labels(limited.scope).inc()
        raise ApiError(
            ErrorCode.RATE_LIMITED,
            429,
            f"too many requests for this {limited.scope}; retry later",
            headers={"Retry-After": str(limited.retry_after)},
            retry_after=limited.retry_after,
        )


def _target_uri(ctx: ServerContext, request: Request) -> str:
    base = ctx.settings.public_url
    if base:
        query = request.url.query
        return base.rstrip("/") + request.url.path + (f"?{query}" if query else "")
    return str(request.url)


# One statement finds the organisation and the device the signature names: the
# organisation row always (404 if absent), the device columns NULL if it is not enrolled.
_KEY_SQL = (
    "SELECT d.signing_key, d.role, d.state, d.revoked_after, o.recovery_key FROM orgs o "
    "LEFT JOIN devices d ON d.org_id = o.id AND d.device_id = ? WHERE o.id = ?"
)
RECOVERY_ROLE = "recovery"


def _signer_row(row: tuple[Any, ...], key_id: bytes) -> tuple[Any, ...]:
    """(signing key, role, state, revoked_after) of the device, or of the recovery key."""
    recovery = row[4]
    if row[0] is None and recovery is not None and VerifyKey(recovery).key_id == key_id:
        return (recovery, RECOVERY_ROLE, "admitted", None)
    return tuple(row[:4])


# The signer's row, found by `pre_authenticate` before the body is read.
_SIGNER_SCOPE_KEY = "sealbox.signer"


def _lookup_signer(ctx: ServerContext, org_id: bytes, key_id: bytes) -> tuple[Any, ...]:
    """The device row of ``key_id`` in ``org_id`` (404 no org, 401 no such device)."""
    rows = fetch(ctx.engine, _KEY_SQL, (key_id, org_id))
    if not rows:
        raise ApiError(ErrorCode.UNKNOWN_ORG, 404, "no such organisation")
    row = _signer_row(tuple(rows[0]), key_id)
    if row[0] is None:
        raise ApiError(
            ErrorCode.SIGNATURE_INVALID,
            401,
            "the signing device is not known to this organisation",
        )
    return row


async def pre_authenticate(request: Request) -> None:
    """Refuse, before reading the body, a request that is unsigned or names no known key.

    The keyid is only looked up here: nothing is trusted until the full verification.
    """
    org_id = parse_org_id(str(request.path_params.get("org", "")))  # 404, from the path only
    headers = request.headers
    if "signature-input" not in headers or "signature" not in headers:
        raise ApiError(
            ErrorCode.UNAUTHENTICATED,
            401,
            "this request must carry an RFC 9421 signature",
        )
    key_id = peek_key_id(headers)
    if key_id is None:
        raise ApiError(
            ErrorCode.SIGNATURE_INVALID,
            401,
            "keyid must be a device id in lowercase hex",
        )
    ctx = get_ctx(request)
    row = await anyio.to_thread.run_sync(_lookup_signer, ctx, org_id, key_id)
    request.scope[_SIGNER_SCOPE_KEY] = (org_id, key_id, row)


def _authenticate(
    ctx: ServerContext,
    org_id: bytes,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    remember_nonce: bool = True,
    signer: tuple[bytes, bytes, tuple[Any, ...]] | None = None,
) -> Caller:
    now = int(time.time())
    window = ctx.settings.replay_window_seconds
    # The keyid is read before verification only to find the row; the verifier asks for
    # the key of the id it verifies, and gets it only if that is the id looked up.
    key_id = peek_key_id(dict(headers)) or b""
    if signer is not None and signer[0] == org_id and signer[1] == key_id:
        row: tuple[Any, ...] = signer[2]  # looked up before the body was read
    else:
        rows = fetch(ctx.engine, _KEY_SQL, (key_id, org_id))
        if not rows:
            raise ApiError(ErrorCode.UNKNOWN_ORG, 404, "no such organisation")
        row = _signer_row(tuple(rows[0]), key_id)
    signing_key, role, state, revoked_after = row
    key = VerifyKey(signing_key) if signing_key is not None else None

    def resolve(device_id: bytes) -> VerifyKey | None:
        return key if device_id == key_id else None

    try:
        verified = verify_request(
            method=method,
            url=url,
            headers=headers,
            body=body,
            resolve_key=resolve,
            now=now,
            window=window,
        )
    except AuthError as exc:
        if exc.reason == "missing":
            raise ApiError(ErrorCode.UNAUTHENTICATED, 401, exc.detail) from None
        if exc.reason == "expired":
            raise ApiError(ErrorCode.SIGNATURE_EXPIRED, 401, exc.detail) from None
        raise ApiError(ErrorCode.SIGNATURE_INVALID, 401, exc.detail) from None
    if key is None or verified.device_id != key_id:  # cannot happen: resolve gives no other key
        raise ApiError(ErrorCode.SIGNATURE_INVALID, 401, "the request signature does not verify")
    caller = Caller(
        org_id,
        key_id,
        key,
        role,
        state,
        revoked_after,
        nonce=verified.nonce,
        created=verified.created,
    )
    if caller.state == "removed":
        raise ApiError(ErrorCode.FORBIDDEN, 403, "the device is no longer in the roster")
    check_rate(
        ctx,
        ("device", caller.device_id, ctx.settings.device_requests_per_minute),
        ("organisation", org_id, ctx.settings.org_requests_per_minute),
    )
    if remember_nonce:
        with write_tx(ctx.engine) as conn:
            batch = Batch(conn)
            check_nonce = remember_nonce_in(batch, caller, now=now, window=window)
            batch.run(commit=True)
            check_nonce()
    return caller


def remember_nonce_in(batch: Batch, caller: Caller, *, now: int, window: int) -> Callable[[], None]:
    """Queue the recording of the caller's (keyid, nonce) in ``batch`` (a write
    transaction); call the returned check after the batch has run: it refuses a replay.

    Push does this inside its own transaction, saving a second write transaction.
    """
    inserted = batch.add(
        "INSERT INTO request_nonces (key_id, nonce, created) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (caller.device_id, caller.nonce, caller.created),
    )
    if secrets.randbelow(256) == 0:  # prune expired nonces now and then
        batch.add("DELETE FROM request_nonces WHERE created < ?", (now - 2 * window,))

    def check() -> None:
        if inserted.rowcount != 1:
            raise ApiError(ErrorCode.REPLAYED_REQUEST, 401, "this signature nonce was already used")

    return check


async def _caller(
    request: Request, org_id: bytes, remember_nonce: bool, recovery: bool = False
) -> Caller:
    ctx = get_ctx(request)
    signer = request.scope.get(_SIGNER_SCOPE_KEY)
    if signer is None:  # a route that is not a SignedRoute: the same check, now
        await pre_authenticate(request)
        signer = request.scope[_SIGNER_SCOPE_KEY]
    body = await request.body()  # bounded while read (server.app); ClientDisconnect: 499
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    url = _target_uri(ctx, request)
    caller: Caller = await anyio.to_thread.run_sync(
        _authenticate, ctx, org_id, request.method, url, headers, body, remember_nonce, signer
    )
    if caller.role == RECOVERY_ROLE and not recovery:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            403,
            "the recovery key may only read the roster and devices and sign a roster version",
        )
    return caller


async def _signed_caller(request: Request, org_id: OrgId) -> Caller:
    return await _caller(request, org_id, True)


async def _push_caller(request: Request, org_id: OrgId) -> Caller:
    return await _caller(request, org_id, False)


async def _recovery_or_member(request: Request, org_id: OrgId) -> Caller:
    return await _caller(request, org_id, True, recovery=True)


SignedCaller = Annotated[Caller, Depends(_signed_caller)]
RecoveryOrMemberCaller = Annotated[Caller, Depends(_recovery_or_member)]
"""Like SignedCaller, and the recovery key too (PROTOCOL §20.4)."""
PushCaller = Annotated[Caller, Depends(_push_caller)]
"""Like SignedCaller, but the push service records the nonce in its own transaction."""


async def _coordinator(caller: SignedCaller) -> Caller:
    if not caller.is_coordinator:
        raise ApiError(
            ErrorCode.FORBIDDEN, 403, "only an active coordinator of the roster may do this"
        )
    return caller


CoordinatorCaller = Annotated[Caller, Depends(_coordinator)]


async def _roster_signer(caller: RecoveryOrMemberCaller) -> Caller:
    if not (caller.is_coordinator or caller.role == RECOVERY_ROLE):
        raise ApiError(
            ErrorCode.FORBIDDEN, 403, "only an active coordinator of the roster may do this"
        )
    return caller


RosterSigner = Annotated[Caller, Depends(_roster_signer)]
"""An active coordinator or the recovery key: who may sign a roster version (§5.2 R3)."""


_AUTH_CALLS = {_signed_caller, _push_caller, _recovery_or_member}


def _needs_signature(dependant: Dependant) -> bool:
    return any(d.call in _AUTH_CALLS or _needs_signature(d) for d in dependant.dependencies)


class SignedRoute(APIRoute):
    """An APIRoute that runs `pre_authenticate` before FastAPI reads the body, when its
    dependencies include a signed caller (every router of the API uses this class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _needs_signature(self.dependant):
            return handler

        async def signed_handler(request: Request) -> Response:
            await pre_authenticate(request)
            return await handler(request)

        return signed_handler

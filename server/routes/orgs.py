"""Organisations, rosters, invites, enrollment, devices (docs/PROTOCOL.md §8.1)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from server.auth import (
    CoordinatorCaller,
    OrgId,
    RecoveryOrMemberCaller,
    RosterSigner,
    SignedRoute,
    check_rate,
)
from server.deps import Ctx
from server.errors import ApiError
from server.routes import PROBLEMS
from server.services import invites, orgs
from server.settings import ADMIN_TOKEN_HINT
from sync.errors import ErrorCode
from sync.messages import (
    CreateOrgRequest,
    CreateOrgResponse,
    DeviceInfo,
    DeviceList,
    EnrollRequest,
    EnrollResponse,
    FreshnessRequest,
    FreshnessResponse,
    InviteCancelRequest,
    InviteCancelResponse,
    InviteList,
    InviteListing,
    InviteRequest,
    InviteResponse,
    RosterRequest,
    RosterResponse,
    RosterVersions,
)

router = APIRouter(prefix="/v1/orgs", tags=["organisations"], route_class=SignedRoute)


def _check_admin(ctx: Ctx, authorization: str | None) -> None:
    token = ctx.settings.admin_token
    if token is None:
        raise ApiError(
            ErrorCode.ADMIN_TOKEN_UNSET,
            403,
            f"organisation creation is disabled: the operator must {ADMIN_TOKEN_HINT}",
        )
    presented = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        raise ApiError(
            ErrorCode.ADMIN_TOKEN_INVALID,
            401,
            "a valid admin token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.post("", status_code=201, response_model=CreateOrgResponse, responses=PROBLEMS)
def create_org(
    body: CreateOrgRequest,
    ctx: Ctx,
    authorization: Annotated[str | None, Header()] = None,
) -> CreateOrgResponse:
    """Create an organisation from its genesis roster (operator's admin token)."""
    check_rate(ctx, ("admin", b"admin", ctx.settings.anonymous_requests_per_minute))
    _check_admin(ctx, authorization)
    org_id = orgs.create_org(
        engine=ctx.engine,
        roster_bytes=body.roster,
        server_key=ctx.server_key,
        today=int(time.time()) // 86400,
    )
    return CreateOrgResponse(org_id=org_id)


@router.get("/{org}/roster", response_model=RosterVersions, responses=PROBLEMS)
def get_roster(
    ctx: Ctx,
    org_id: OrgId,
    caller: RecoveryOrMemberCaller,
    since: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> RosterVersions:
    """Every roster version newer than ``since``, and the newest freshness statement (members)."""
    versions, freshness = orgs.roster_answer(engine=ctx.engine, org_id=org_id, since=since)
    return RosterVersions(versions=versions, freshness=freshness)


@router.post("/{org}/roster", response_model=RosterResponse, responses=PROBLEMS)
def post_roster(
    body: RosterRequest, ctx: Ctx, org_id: OrgId, caller: RosterSigner
) -> RosterResponse:
    """Append a roster version that extends the chain (coordinators)."""
    version = orgs.post_roster(
        engine=ctx.engine, org_id=org_id, roster_bytes=body.roster, server_key=ctx.server_key
    )
    return RosterResponse(version=version)


@router.post("/{org}/roster/freshness", response_model=FreshnessResponse, responses=PROBLEMS)
def post_freshness(
    body: FreshnessRequest, ctx: Ctx, org_id: OrgId, caller: CoordinatorCaller
) -> FreshnessResponse:
    """Keep a roster freshness statement if it is the newest (coordinators, PROTOCOL §18.2)."""
    served = orgs.post_freshness(
        engine=ctx.engine, org_id=org_id, document=body.freshness, now=int(time.time())
    )
    return FreshnessResponse(version=served.version, issued_at=served.issued_at)


@router.post("/{org}/invites", status_code=201, response_model=InviteResponse, responses=PROBLEMS)
def post_invite(
    body: InviteRequest, ctx: Ctx, org_id: OrgId, caller: CoordinatorCaller
) -> InviteResponse:
    """Register a coordinator-signed invite (the server keeps only its secret's hash)."""
    invite = orgs.register_invite(
        engine=ctx.engine,
        org_id=org_id,
        document_bytes=body.invite,
        now=int(time.time()),
        max_lifetime=ctx.settings.invite_max_lifetime_seconds,
    )
    return InviteResponse(invite_id=invite.invite_id, expires_at=invite.expires_at)


@router.get("/{org}/invites", response_model=InviteList, responses=PROBLEMS)
def get_invites(ctx: Ctx, org_id: OrgId, caller: CoordinatorCaller) -> InviteList:
    """Every registered invite with its use and cancellation (coordinators, PROTOCOL §6.7)."""
    listed = invites.list_invites(engine=ctx.engine, org_id=org_id)
    return InviteList(
        invites=[
            InviteListing(invite=i.document, used_by=i.used_by, cancellation=i.cancellation)
            for i in listed
        ]
    )


@router.post("/{org}/invites/cancel", response_model=InviteCancelResponse, responses=PROBLEMS)
def cancel_invite(
    body: InviteCancelRequest, ctx: Ctx, org_id: OrgId, caller: CoordinatorCaller
) -> InviteCancelResponse:
    """Keep a coordinator-signed cancellation: the invite enrolls no one from now on
    (idempotent; PROTOCOL §6.7)."""
    stored = invites.cancel_invite(
        engine=ctx.engine, org_id=org_id, document_bytes=body.cancellation
    )
    return InviteCancelResponse(invite_id=stored.invite_id, used_by=stored.used_by)


@router.post("/{org}/enroll", status_code=201, response_model=EnrollResponse, responses=PROBLEMS)
def enroll(body: EnrollRequest, ctx: Ctx, org_id: OrgId) -> EnrollResponse:
    """Enroll a device with an invite secret and its self-signed enrollment (no signature)."""
    check_rate(ctx, ("enrollment", org_id, ctx.settings.anonymous_requests_per_minute))
    result = orgs.enroll(
        engine=ctx.engine,
        org_id=org_id,
        enrollment_bytes=body.enrollment,
        secret=body.secret,
        now=int(time.time()),
    )
    return EnrollResponse(device_id=result.device_id, invite=result.invite, rosters=result.rosters)


@router.get("/{org}/devices", response_model=DeviceList, responses=PROBLEMS)
def list_devices(ctx: Ctx, org_id: OrgId, caller: RosterSigner) -> JSONResponse:
    """Every device with its documents, state, flags, chain watermark and holes (coordinators)."""
    devices = [
        DeviceInfo(
            device_id=d.device_id,
            role=d.role,
            state=d.state,
            signing_key=d.signing_key,
            enrollment=d.enrollment,
            invite=d.invite,
            cancellation=d.cancellation,
            admitted_version=d.admitted_version,
            revoked_after=d.revoked_after,
            flags=["equivocation"] if d.equivocation else [],
            watermark=d.watermark,
            max_seq=d.max_seq,
            holes=d.holes,
        )
        for d in orgs.list_devices(engine=ctx.engine, org_id=org_id)
    ]
    return JSONResponse(DeviceList(devices=devices).model_dump(mode="json"))

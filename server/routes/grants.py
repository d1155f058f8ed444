"""Grants (chain keys of past epochs re-wrapped to a coordinator) and rotation requests
(docs/PROTOCOL.md §19)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from server.auth import CoordinatorCaller, OrgId, SignedCaller, SignedRoute
from server.deps import Ctx
from server.routes import PROBLEMS
from server.services import grants
from sync.grant_messages import (
    MAX_GRANTS_PAGE,
    GrantList,
    GrantRequest,
    GrantResponse,
    RotationAnswer,
    RotationList,
    RotationPost,
    StoredGrant,
    StoredRotation,
)

router = APIRouter(prefix="/v1/orgs", tags=["grants"], route_class=SignedRoute)


@router.post("/{org}/grants", status_code=201, response_model=GrantResponse, responses=PROBLEMS)
def post_grant(
    body: GrantRequest, ctx: Ctx, org_id: OrgId, caller: CoordinatorCaller
) -> GrantResponse:
    """Keep a grant signed by the calling coordinator (idempotent: ``created`` says)."""
    stored = grants.post_grant(
        engine=ctx.engine,
        org_id=org_id,
        document=body.grant,
        caller=caller.device_id,
        caller_key=caller.signing_key,
        now=int(time.time()),
        quota=ctx.settings.org_quota_bytes,
    )
    return GrantResponse(grant_id=stored.grant_id, seq=stored.seq, created=stored.created)


@router.get("/{org}/grants", response_model=GrantList, responses=PROBLEMS)
def list_grants(
    ctx: Ctx,
    org_id: OrgId,
    caller: CoordinatorCaller,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_GRANTS_PAGE)] = MAX_GRANTS_PAGE,
) -> GrantList:
    """The organisation's grants after position ``after``, ascending (coordinators)."""
    items, more = grants.list_grants(engine=ctx.engine, org_id=org_id, after=after, limit=limit)
    return GrantList(
        grants=[StoredGrant(seq=g.seq, grant=g.document, received_at=g.received_at) for g in items],
        more=more,
    )


@router.post("/{org}/rotations", status_code=201, response_model=RotationAnswer, responses=PROBLEMS)
def post_rotation(
    body: RotationPost, ctx: Ctx, org_id: OrgId, caller: SignedCaller
) -> RotationAnswer:
    """Keep the calling device's request to replace its signing key (PROTOCOL §19.7)."""
    request, created = grants.post_rotation(
        engine=ctx.engine,
        org_id=org_id,
        document=body.rotation,
        caller=caller.device_id,
        caller_key=caller.signing_key,
        now=int(time.time()),
    )
    return RotationAnswer(
        old_device_id=request.old_device, new_device_id=request.new_device, created=created
    )


@router.get("/{org}/rotations", response_model=RotationList, responses=PROBLEMS)
def list_rotations(ctx: Ctx, org_id: OrgId, caller: CoordinatorCaller) -> RotationList:
    """Every rotation request waiting in the organisation (coordinators)."""
    rows = grants.list_rotations(engine=ctx.engine, org_id=org_id)
    return RotationList(rotations=[StoredRotation(rotation=d, received_at=t) for d, t in rows])

"""Shared helpers of the client-core tests: an organisation, an honest push server, `play`.

The tests play the server's side of each exchange by hand, often as an adversary
(bad receipts, reordered results, rolled-back rosters, forged or withheld envelopes),
and run the flows of `sync.client` through its one driver, `drive`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from crypto import KemPrivateKey, KemPublicKey, SigningKey, parse_envelope
from sync.client import (
    CoordinatorView,
    DeviceState,
    Event,
    Flow,
    Request,
    Response,
    drive,
    seal_edit,
)
from sync.cursor import decode_cursor, encode_cursor
from sync.invite import Enrollment, Invite, InviteCode, seal_label
from sync.merge import FieldState
from sync.messages import b64encode, decode_push_cbor
from sync.receipt import Receipt, ReceiptItem
from sync.report import ReportContent
from sync.roster import Member, Role, Roster, SignedRoster

T = TypeVar("T")

ORG = b"O" * 16
PATH = "/v1/orgs/org"
EPOCH = b"E" * 16
"""The honest server's cursor epoch (§9.2)."""
REPORT = bytes(16)


class Org:
    """A coordinator, a field device and the server key, in a two-version roster chain."""

    def __init__(self) -> None:
        self.server = SigningKey.generate()
        self.coord = SigningKey.generate()
        self.coord_kem = KemPrivateKey.generate()
        self.field = SigningKey.generate()
        genesis = Roster(
            ORG,
            1,
            bytes(32),
            self.server.verify_key,
            (
                Member(
                    self.coord.verify_key.key_id,
                    self.coord.verify_key,
                    Role.COORDINATOR,
                    self.coord_kem.public_key,
                ),
            ),
        ).sign(self.coord)
        self.chain = [genesis]
        self.extend(
            lambda r: r.with_member(
                Member(self.field.verify_key.key_id, self.field.verify_key, Role.FIELD)
            )
        )

    @property
    def roster(self) -> SignedRoster:
        return self.chain[-1]

    def extend(self, change: Callable[[Roster], Roster]) -> SignedRoster:
        new = change(self.roster.roster).next_version(self.roster).sign(self.coord)
        self.chain.append(new)
        return new

    def device(self) -> DeviceState:
        return DeviceState(org_id=ORG, device_id=self.field.verify_key.key_id)

    def view(self) -> CoordinatorView:
        return CoordinatorView(roster=self.roster, kem_key=self.coord_kem)


def content(**fields: str) -> ReportContent:
    return ReportContent(client_time=1_700_000_000, fields=fields)


def sealed(org: Org, n: int, report: bytes = REPORT) -> list[bytes]:
    """``n`` revisions of ``report`` by the field device: a key envelope, then seqs 2..n+1."""
    state = org.device()
    for i in range(n):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=report,
            content=content(a=str(i)),
        )
    return [i.data for i in state.outbox]


def play(flow: Flow[T], handle: Callable[[Request], Response]) -> tuple[T, list[Event]]:
    """Run ``flow`` through `drive`; ``handle`` plays the server. Returns (result, events)."""
    events: list[Event] = []
    result = drive(flow, handle, events.append)
    return result, events


def of_type(events: list[Event], kind: type[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def pushed_envelopes(request: Request) -> list[bytes]:
    """The envelopes of a push request (the client pushes CBOR, PROTOCOL §8.2)."""
    assert request.content_type == "application/cbor" and request.content is not None
    return decode_push_cbor(request.content)


def problem(status: int, code: str, detail: str = "refused") -> Response:
    """An RFC 9457 refusal (application/problem+json)."""
    return Response.of_json(
        status,
        {
            "type": f"https://sealbox.dev/problems/{code}",
            "title": code,
            "status": status,
            "detail": detail,
            "code": code,
        },
    )


def receipt_bytes(
    server: SigningKey, device: bytes, items: tuple[ReceiptItem, ...], org: bytes = ORG
) -> bytes:
    return Receipt(org, device, 1, items).sign(server).to_bytes()


class HonestServer:
    """Stores envelopes, answers push with per-item results and a signed receipt."""

    def __init__(self, org: Org, max_items: int = 1000) -> None:
        self.org = org
        self.stored: dict[bytes, int] = {}
        self.raw: dict[bytes, bytes] = {}
        self.requests: list[Request] = []
        self.max_items = max_items

    def answer(self, request: Request) -> dict[str, Any] | None:
        """The JSON push answer, or None for a batch over ``max_items`` (413)."""
        self.requests.append(request)
        assert request.method == "POST" and request.path == f"{PATH}/push"
        envelopes = pushed_envelopes(request)
        if len(envelopes) > self.max_items:
            return None
        results, items = [], []
        for data in envelopes:
            env = parse_envelope(data)
            status = "duplicate" if env.id in self.stored else "created"
            self.stored.setdefault(env.id, len(self.stored) + 1)
            self.raw[env.id] = data
            results.append(
                {
                    "envelope_id": b64encode(env.id),
                    "status": status,
                    "retryable": False,
                    "server_seq": self.stored[env.id],
                }
            )
            items.append(ReceiptItem(env.id, env.header.seq, self.stored[env.id]))
        device = parse_envelope(envelopes[0]).header.device
        receipt = receipt_bytes(self.org.server, device, tuple(items))
        return {"results": results, "receipt": b64encode(receipt)}

    def __call__(self, request: Request) -> Response:
        body = self.answer(request)
        if body is None:
            return problem(413, "payload_too_large", "too many")
        return Response.of_json(200, body)


def device_info(
    device_id: bytes,
    signing_key: bytes,
    *,
    role: str = "field",
    state: str = "enrolled",
    watermark: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """A `DeviceInfo` as the server lists it on the JSON wire (every required field)."""
    return {
        "device_id": b64encode(device_id),
        "role": role,
        "state": state,
        "signing_key": b64encode(signing_key),
        "flags": [],
        "watermark": watermark,
        "max_seq": watermark,
        "holes": [],
        **extra,
    }


def invited(
    org: Org,
    key: SigningKey,
    *,
    role: Role = Role.FIELD,
    signer: SigningKey | None = None,
    kem: KemPublicKey | None = None,
    prove: bool = True,
) -> tuple[dict[str, Any], InviteCode]:
    """An enrollment of ``key`` against a fresh invite, as the server lists it."""
    doc, code = Invite.create(
        org_id=ORG,
        role=role,
        expires_at=2**40,
        roster_fingerprint=org.roster.hash,
        server_url="http://127.0.0.1",
        signing_key=signer or org.coord,
    )
    secret = code.secret if prove else secrets.token_bytes(32)
    label = seal_label(
        "phone", secret=secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    enrollment = Enrollment(ORG, code.invite_id, key.verify_key, role, label, kem)
    device = device_info(
        enrollment.device_id,
        key.verify_key.raw,
        role=str(role),
        enrollment=b64encode(enrollment.sign(key).to_bytes()),
        invite=b64encode(doc.to_bytes()),
    )
    return device, code


def feed_page(envelopes: list[bytes], *, after: int = 0, more: bool = False) -> Response:
    """An honest CBOR feed page holding ``envelopes`` as server seqs after+1.. (§9.1)."""
    items = [
        {"server_seq": after + 1 + i, "envelope": e, "flags": []} for i, e in enumerate(envelopes)
    ]
    cursor = encode_cursor(EPOCH, after + len(envelopes))
    return Response.of_cbor(200, {"items": items, "cursor": cursor, "more": more})


def serve_feed(envelopes: list[bytes], request: Request) -> Response:
    """An honest changes feed over ``envelopes`` (server seqs 1..n), as §9.1 states it."""
    assert request.method == "GET" and request.path == f"{PATH}/changes"
    decoded = decode_cursor(request.query.get("cursor", ""))
    after = 0 if decoded is None else decoded[1]
    limit = int(request.query["limit"])
    chunk = envelopes[after : after + limit]
    return feed_page(chunk, after=after, more=after + len(chunk) < len(envelopes))


def field_of(view: CoordinatorView, report: bytes, name: str) -> FieldState:
    """The merged state of one field of a report the view shows (it must show it)."""
    state = view.report(report)
    assert state is not None, "the view shows no such report"
    found = state.field(name)
    assert found is not None, f"the report has no field {name!r}"
    return found

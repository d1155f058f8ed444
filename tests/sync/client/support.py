"""Shared helpers of the client-core tests: an organisation, an honest push server, `play`.

The tests play the server's side of each exchange by hand, often as an adversary
(bad receipts, reordered results, rolled-back rosters, forged or withheld envelopes),
and run the flows of `sync.client` through its one driver, `drive`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from crypto import KemPrivateKey, KemPublicKey, SigningKey, parse_envelope
from sync.checkpoint import Checkpoint
from sync.client import (
    CoordinatorView,
    DeviceState,
    Event,
    Flow,
    LogPosition,
    Request,
    Response,
    drive,
    seal_edit,
)
from sync.cursor import decode_cursor, encode_cursor
from sync.invite import Enrollment, Invite, InviteCode, seal_label
from sync.merge import FieldState
from sync.merkle import (
    Frontier,
    Node,
    batch_inclusion_proof,
    consistency_proof,
    leaf_hash,
    subtree_hash,
)
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


def device_with(org: Org, n: int, report: bytes = REPORT) -> DeviceState:
    """The field device after sealing ``n`` revisions of ``report``: its outbox holds a key
    envelope, then seqs 2..n+1."""
    state = org.device()
    for i in range(n):
        seal_edit(
            state,
            roster=org.roster,
            signing_key=org.field,
            report=report,
            content=content(a=str(i)),
        )
    return state


def sealed(org: Org, n: int, report: bytes = REPORT) -> list[bytes]:
    """The envelopes of `device_with`'s outbox."""
    return [i.data for i in device_with(org, n, report).outbox]


def fake_ids(n: int, salt: bytes = b"") -> list[bytes]:
    """``n`` distinct 32-byte stand-ins for envelope ids (leaves of a log, §17.1)."""
    return [hashlib.sha256(salt + b"%d" % i).digest() for i in range(n)]


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


class HonestLog:
    """An honest server's transparency log in memory (PROTOCOL §17): the leaves in server
    order and every perfect subtree, so any checkpoint and proof can be answered."""

    def __init__(self, server: SigningKey, ids: Iterable[bytes] = (), org: bytes = ORG) -> None:
        self.server, self.org = server, org
        self.ids: list[bytes] = []
        self.nodes: dict[Node, bytes] = {}
        self.frontier = Frontier.empty()
        self.extend(ids)

    def extend(self, ids: Iterable[bytes]) -> None:
        ids = list(ids)
        self.ids += ids
        self.frontier, completed = self.frontier.append(leaf_hash(e) for e in ids)
        self.nodes.update(completed)

    @property
    def size(self) -> int:
        return len(self.ids)

    def checkpoint(self, size: int | None = None) -> bytes:
        n = self.size if size is None else size
        root = subtree_hash(0, n, self.nodes) if n else Frontier.empty().root()
        return Checkpoint(self.org, n, root, 1).sign(self.server).to_bytes()

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size if new is None else new
        return consistency_proof(old, new, self.nodes) if 0 < old < new else []

    def batch(self, indices: Iterable[int], size: int | None = None) -> list[bytes]:
        indices = sorted(set(indices))
        n = self.size if size is None else size
        return batch_inclusion_proof(indices, n, self.nodes) if indices else []

    def position(self, server_key: Any, size: int = 0, held: int | None = None) -> LogPosition:
        """What a client that pulled ``size`` leaves and verified ``held`` would hold."""
        frontier, _ = Frontier.empty().append(leaf_hash(e) for e in self.ids[:size])
        document = self.checkpoint(held) if held is not None else None
        return LogPosition.restore(self.org, server_key, document, frontier)

    def answer(self, request: Request) -> Response:
        """``GET /log?since=M`` (§17.3)."""
        assert request.method == "GET" and request.path.endswith("/log")
        since = int(request.query.get("since", "0"))
        return Response.of_json(
            200,
            {
                "checkpoint": b64encode(self.checkpoint()),
                "consistency": [b64encode(h) for h in self.consistency(since)],
            },
        )


def filler_id(seq: int) -> bytes:
    """The envelope id standing in for server seq ``seq`` where a test holds none."""
    return hashlib.sha256(b"filler %d" % seq).digest()


def receipt_bytes(
    server: SigningKey,
    device: bytes,
    items: tuple[ReceiptItem, ...],
    org: bytes = ORG,
    log: HonestLog | None = None,
) -> bytes:
    """A receipt for ``items``, with a checkpoint of ``log`` (by default a log holding the
    items at their server seqs and filler elsewhere) and the batch proof (§17.3)."""
    if log is None:
        at = {i.server_seq: i.envelope_id for i in items}
        size = max(at, default=0)
        log = HonestLog(server, (at.get(s, filler_id(s)) for s in range(1, size + 1)), org)
    proof = log.batch(i.server_seq - 1 for i in items)
    return Receipt(org, device, 1, items, log.checkpoint(), tuple(proof)).sign(server).to_bytes()


class HonestServer:
    """Stores envelopes, answers push with per-item results and a signed receipt."""

    def __init__(self, org: Org, max_items: int = 1000) -> None:
        self.org = org
        self.stored: dict[bytes, int] = {}
        self.raw: dict[bytes, bytes] = {}
        self.requests: list[Request] = []
        self.max_items = max_items
        self.log = HonestLog(org.server)

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
            if env.id not in self.stored:
                self.log.extend([env.id])
                self.stored[env.id] = self.log.size  # its server seq: its leaf + 1
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
        receipt = receipt_bytes(self.org.server, device, tuple(items), log=self.log)
        answer: dict[str, Any] = {"results": results, "receipt": b64encode(receipt)}
        if "since" in request.query:
            proof = self.log.consistency(int(request.query["since"]))
            answer["consistency"] = [b64encode(h) for h in proof]
        return answer

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


def feed_page(
    envelopes: list[bytes],
    *,
    after: int = 0,
    more: bool = False,
    log: HonestLog | None = None,
    since: int = 0,
    server: SigningKey | None = None,
) -> Response:
    """An honest CBOR feed page holding ``envelopes`` as server seqs after+1.. (§9.1), with
    the checkpoint of ``log`` (by default: filler before the page, the page, nothing
    after) and its proofs (§17.3)."""
    items = [
        {"server_seq": after + 1 + i, "envelope": e, "flags": []} for i, e in enumerate(envelopes)
    ]
    last = after + len(envelopes)
    if log is None:
        assert server is not None, "a page needs a log or the server key to sign one"
        ids = [filler_id(s) for s in range(1, after + 1)]
        log = HonestLog(server, ids + [parse_envelope(e).id for e in envelopes])
    page_log = {
        "checkpoint": log.checkpoint(),
        "prefix": log.consistency(last),
        "consistency": log.consistency(since),
    }
    cursor = encode_cursor(EPOCH, last)
    return Response.of_cbor(200, {"items": items, "cursor": cursor, "more": more, "log": page_log})


def serve_feed(envelopes: list[bytes], request: Request, *, server: SigningKey) -> Response:
    """An honest changes feed over ``envelopes`` (server seqs 1..n), as §9.1 states it."""
    assert request.method == "GET" and request.path == f"{PATH}/changes"
    decoded = decode_cursor(request.query.get("cursor", ""))
    after = 0 if decoded is None else decoded[1]
    limit = int(request.query["limit"])
    chunk = envelopes[after : after + limit]
    log = HonestLog(server, (parse_envelope(e).id for e in envelopes))
    return feed_page(
        chunk,
        after=after,
        more=after + len(chunk) < len(envelopes),
        log=log,
        since=int(request.query.get("since", "0")),
    )


def field_of(view: CoordinatorView, report: bytes, name: str) -> FieldState:
    """The merged state of one field of a report the view shows (it must show it)."""
    state = view.report(report)
    assert state is not None, "the view shows no such report"
    found = state.field(name)
    assert found is not None, f"the report has no field {name!r}"
    return found

"""The client sync engine: sealing, outbox, push, receipts, roster and pull, without I/O.

Theory of operation (docs/PROTOCOL.md §15):
* Flows are generators in the style of httpx's ``auth_flow``: a flow yields a
  `Request` and is sent back the `Response`; it may also yield a `Checkpoint`
  (a past-tense fact such as "BatchAcknowledged") after which the driver must
  persist the state objects it passed in, and sends back None.  The CLI drives
  the flows over HTTP; tests drive them against an in-memory server.  Nothing
  here touches a socket, a file, the clock or the environment: time comes in as
  an argument, randomness only through `crypto` key generation.
* `DeviceState` is one device's own chain: the next sequence number, the hash
  of the previous envelope, the current sender-key epoch (its key sequence,
  its recipients, the newest chain key) and, per report, the heads it knows.
  `seal_edit` appends a sender-key envelope when an epoch must start (first
  envelope, coordinator set changed, 10,000 revisions) and then the revision.
* The outbox keeps envelopes in device order.  `push_flow` sends them in
  batches within the server's limits, halving a batch on 413.  Each item's
  result is applied on its own: created/duplicate/conflict are stored by the
  server; once a verified server receipt covers an item, it is purged (the
  device keeps the id, never the bytes).  Retryable items stay for the next
  sync; terminal ones (invalid, equivocation, revoked) move to `rejected`,
  which is kept, never silently dropped, so nothing queued is lost.
* Coordinators additionally run `pull_flow`: the changes feed, verified by
  `CoordinatorView` before anything is shown (signature, roster membership
  or an enrollment bound to a coordinator-signed invite, revocation point,
  chain position; gaps and forks are findings), and decrypted.  A 409 on the
  cursor means the server went back in time: the view says so loudly, restarts
  the feed from the beginning, and the flow re-pushes what the view holds.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    MalformedEnvelope,
    MessageKey,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    open_revision,
    open_sender_key,
    parse_envelope,
    seal_revision,
    seal_sender_key,
)
from crypto.suite import Purpose
from sync.invite import Enrollment, Invite, InviteCode, InviteError, open_label, secret_hash
from sync.merge import MergeError, ReportDag, ReportState, Revision
from sync.messages import CBOR_MEDIA_TYPE, encode_push_cbor
from sync.receipt import Receipt
from sync.report import ContentError, ReportContent
from sync.roster import Member, Role, RosterError, SignedRoster, verify_chain

__all__ = [
    "EPOCH_LENGTH",
    "Admission",
    "Checkpoint",
    "CoordinatorView",
    "DeviceState",
    "Finding",
    "Limits",
    "OutboxItem",
    "PushSummary",
    "RosterRollback",
    "Request",
    "Response",
    "ServerMisbehaved",
    "SyncRefused",
    "admit_flow",
    "b64d",
    "b64e",
    "pull_flow",
    "repair_roster_flow",
    "push_flow",
    "revoke_flow",
    "roster_flow",
    "seal_edit",
    "verified_chain",
    "verify_enrollment",
]

EPOCH_LENGTH = 10_000
"""A device starts a new sender-key epoch at least every this many revisions."""

TERMINAL_STATUSES = frozenset({"invalid", "equivocation", "revoked"})
STORED_STATUSES = frozenset({"created", "duplicate", "conflict"})


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64url text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the I/O seam ------------------------------------------------------------------------------


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
    accept: str = "application/json"  # the answer's media type (CBOR answers keep raw bytes)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A fact after which the driver persists the state objects (and sends back None)."""

    event: str
    envelopes: tuple[bytes, ...] = ()


Flow = Generator["Request | Checkpoint", "Response | None", Any]


class SyncRefused(Exception):
    """The server refused a request outright (revoked device, expired invite, ...)."""

    def __init__(self, status: int, code: str | None, detail: str) -> None:
        super().__init__(f"server refused ({status} {code or 'error'}): {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @classmethod
    def from_response(cls, response: Response) -> SyncRefused:
        body = response.body if isinstance(response.body, dict) else {}
        detail = str(body.get("detail") or body.get("title") or "no detail")
        return cls(response.status, response.code, detail)


class ServerMisbehaved(Exception):
    """The server served something a correct server never would (rollback, forged data)."""


def _expect(response: Response | None, *ok: int) -> Response:
    assert response is not None, "the driver must send a Response back for a Request"
    if response.status not in ok:
        raise SyncRefused.from_response(response)
    return response


# --- the device's own chain ---------------------------------------------------------------------


@dataclass(slots=True)
class OutboxItem:
    envelope_id: bytes
    data: bytes
    seq: int
    report: bytes | None

    def to_cbor(self) -> list[Any]:
        return [self.envelope_id, self.data, self.seq, self.report]

    @classmethod
    def from_cbor(cls, raw: list[Any]) -> OutboxItem:
        return cls(raw[0], raw[1], raw[2], raw[3])


@dataclass(slots=True)
class DeviceState:
    """Everything a device persists about its own chain and outbox (no plaintext)."""

    org_id: bytes
    device_id: bytes
    seq: int = 0
    prev: bytes = bytes(32)
    key_seq: int = 0
    chain_key: bytes | None = None
    chain_index: int = 0
    epoch_recipients: tuple[bytes, ...] = ()
    heads: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    outbox: list[OutboxItem] = field(default_factory=list)
    rejected: list[tuple[OutboxItem, str, str]] = field(default_factory=list)
    receipts: list[bytes] = field(default_factory=list)
    sent: int = 0
    last_server_seq: int = 0

    def to_cbor(self) -> dict[str, Any]:
        return {
            "o": self.org_id,
            "d": self.device_id,
            "n": self.seq,
            "h": self.prev,
            "c": self.key_seq,
            "k": self.chain_key,
            "i": self.chain_index,
            "e": list(self.epoch_recipients),
            "hd": [[r, list(h)] for r, h in sorted(self.heads.items())],
            "ob": [i.to_cbor() for i in self.outbox],
            "rj": [[i.to_cbor(), s, d] for i, s, d in self.rejected],
            "rc": list(self.receipts),
            "s": self.sent,
            "ss": self.last_server_seq,
        }

    @classmethod
    def from_cbor(cls, raw: dict[str, Any]) -> DeviceState:
        return cls(
            org_id=raw["o"],
            device_id=raw["d"],
            seq=raw["n"],
            prev=raw["h"],
            key_seq=raw["c"],
            chain_key=raw["k"],
            chain_index=raw["i"],
            epoch_recipients=tuple(raw["e"]),
            heads={r: tuple(h) for r, h in raw["hd"]},
            outbox=[OutboxItem.from_cbor(i) for i in raw["ob"]],
            rejected=[(OutboxItem.from_cbor(i), s, d) for i, s, d in raw["rj"]],
            receipts=list(raw["rc"]),
            sent=raw["s"],
            last_server_seq=raw["ss"],
        )

    def _append(self, envelope: Envelope, report: bytes | None) -> None:
        self.seq = envelope.header.seq
        self.prev = envelope.id
        self.outbox.append(
            OutboxItem(envelope.id, envelope.to_bytes(), envelope.header.seq, report)
        )


def seal_edit(
    state: DeviceState,
    *,
    roster: SignedRoster,
    signing_key: SigningKey,
    report: bytes,
    content: ReportContent,
    parents: Iterable[bytes] | None = None,
) -> Envelope:
    """Seal one revision of ``report`` into the outbox (a key envelope first if an epoch starts).

    ``parents`` default to the heads this device knows for the report. The caller
    persists ``state`` before anything leaves the device.
    """
    if signing_key.verify_key.key_id != state.device_id:
        raise ValueError("signing key does not belong to this device")
    recipients = roster.roster.recipients()
    recipient_ids = tuple(sorted(k.key_id for k in recipients))
    if (
        state.chain_key is None
        or recipient_ids != state.epoch_recipients
        or state.chain_index >= EPOCH_LENGTH
    ):
        chain_key = ChainKey.generate()
        key_envelope = seal_sender_key(
            org=state.org_id,
            seq=state.seq + 1,
            prev=state.prev,
            roster_version=roster.roster.version,
            chain_key=chain_key,
            recipients=recipients,
            signing_key=signing_key,
        )
        state._append(key_envelope, None)
        state.key_seq, state.chain_key, state.chain_index = (
            key_envelope.header.seq,
            chain_key.raw,
            0,
        )
        state.epoch_recipients = recipient_ids
    message_key, next_chain = ChainKey(state.chain_key).advance()
    parent_ids = tuple(state.heads.get(report, ())) if parents is None else tuple(parents)
    envelope = seal_revision(
        org=state.org_id,
        report=report,
        parents=parent_ids,
        seq=state.seq + 1,
        prev=state.prev,
        roster_version=roster.roster.version,
        key_seq=state.key_seq,
        message_key=message_key,
        content=content.encode(),
        signing_key=signing_key,
    )
    state._append(envelope, report)
    # Forward secrecy on the device: only the next chain key is kept.
    state.chain_key, state.chain_index = next_chain.raw, state.chain_index + 1
    state.heads[report] = (envelope.id,)
    return envelope


# --- push ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch_items: int = 100
    max_batch_bytes: int = 1024 * 1024

    @classmethod
    def from_server(cls, info: dict[str, Any]) -> Limits:
        limits = info.get("limits", {}) if isinstance(info, dict) else {}
        return cls(
            max_batch_items=int(limits.get("max_batch_items", 100)),
            max_batch_bytes=int(limits.get("max_batch_bytes", 1024 * 1024)),
        )


@dataclass(slots=True)
class PushSummary:
    stored: int = 0
    purged: int = 0
    retry_later: int = 0
    rejected: int = 0
    batches: int = 0
    splits: int = 0


def _batch(items: list[OutboxItem], max_items: int, max_bytes: int) -> list[OutboxItem]:
    batch: list[OutboxItem] = []
    size = 0
    for item in items:
        cost = len(item.data)  # the server's limit counts envelope bytes (PROTOCOL §8.2)
        if batch and (len(batch) >= max_items or size + cost > max_bytes):
            break
        batch.append(item)
        size += cost
    return batch


def push_flow(
    state: DeviceState, *, server_key: VerifyKey, limits: Limits, org_path: str
) -> Generator[Request | Checkpoint, Response | None, PushSummary]:
    """Push the outbox once through; each item is tried at most once per run."""
    summary = PushSummary()
    max_items = max(1, limits.max_batch_items)
    max_bytes = max(1, limits.max_batch_bytes - 1024)
    tried: set[bytes] = set()
    while True:
        pending = [i for i in state.outbox if i.envelope_id not in tried]
        batch = _batch(pending, max_items, max_bytes)
        if not batch:
            return summary
        response = yield Request(
            "POST",
            f"{org_path}/push",
            content=encode_push_cbor([i.data for i in batch]),
            content_type=CBOR_MEDIA_TYPE,
        )
        assert response is not None
        if response.status == 413:
            if len(batch) == 1:
                _reject(state, batch[0], "too_large", "the server refuses an envelope this large")
                summary.rejected += 1
                yield Checkpoint("ItemRejected")
                continue
            summary.splits += 1
            max_items = max(1, len(batch) // 2)
            continue
        _expect(response, 200, 201)
        summary.batches += 1
        _apply_push_results(state, batch, response.body, server_key, summary)
        tried.update(i.envelope_id for i in batch)
        yield Checkpoint("BatchAcknowledged")


def _reject(state: DeviceState, item: OutboxItem, status: str, detail: str) -> None:
    state.outbox = [i for i in state.outbox if i.envelope_id != item.envelope_id]
    state.rejected.append((item, status, detail))


def _apply_push_results(
    state: DeviceState,
    batch: list[OutboxItem],
    body: Any,
    server_key: VerifyKey,
    summary: PushSummary,
) -> None:
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != len(batch):
        raise ServerMisbehaved("push results do not match the batch")
    receipt: Receipt | None = None
    if body.get("receipt"):
        try:
            receipt = Receipt.verify(
                b64d(body["receipt"]), server_key, org_id=state.org_id, device_id=state.device_id
            )
        except (VerificationFailed, ValueError) as exc:
            raise ServerMisbehaved("the server's receipt does not verify") from exc
    covered = {i.envelope_id: i for i in receipt.items} if receipt else {}
    if receipt is not None:
        state.receipts.append(b64d(body["receipt"]))
    purge: set[bytes] = set()
    for item, result in zip(batch, results, strict=True):
        status = str(result.get("status"))
        if result.get("envelope_id") not in (None, b64e(item.envelope_id)):
            raise ServerMisbehaved("push results are not in request order")
        if status in STORED_STATUSES:
            summary.stored += 1
            receipted = covered.get(item.envelope_id)
            if receipted is not None and receipted.device_seq == item.seq:
                purge.add(item.envelope_id)
                state.last_server_seq = max(state.last_server_seq, receipted.server_seq)
            else:
                summary.retry_later += 1  # stored, but not receipted: re-push gets a receipt
        elif result.get("retryable"):
            summary.retry_later += 1
        elif status in TERMINAL_STATUSES or not result.get("retryable"):
            _reject(state, item, status, str(result.get("detail") or status))
            summary.rejected += 1
    if purge:
        state.outbox = [i for i in state.outbox if i.envelope_id not in purge]
        state.sent += len(purge)
        summary.purged += len(purge)


# --- roster --------------------------------------------------------------------------------------


class RosterRollback(ServerMisbehaved):
    """The server serves a roster older than one this client verified (restored or lying)."""

    def __init__(self, served: int, trusted: int) -> None:
        super().__init__(
            f"the server serves roster version {served}, older than the verified version {trusted}"
        )
        self.served = served


def roster_flow(
    *, org_path: str, trusted: SignedRoster
) -> Generator[Request | Checkpoint, Response | None, tuple[SignedRoster, list[SignedRoster]]]:
    """Fetch roster versions from the trusted one on and verify them; returns (newest, new ones).

    The trusted version itself is asked for again, so a server that no longer has it
    (restored from an old backup, or rolling back) is caught.

    Raises:
        RosterRollback: the server's newest version is older than the trusted one.
        ServerMisbehaved: any other broken chain rule (a substituted version, a bad signature).
    """
    since = trusted.roster.version - 1
    response = _expect(
        (yield Request("GET", f"{org_path}/roster", query={"since": str(since)})), 200
    )
    try:
        versions = [SignedRoster.parse(b64d(v)) for v in response.body["versions"]]
    except (RosterError, KeyError, TypeError, ValueError) as exc:
        raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
    served = max((v.roster.version for v in versions), default=0)
    if served < trusted.roster.version:
        # Ask for the whole chain to learn how far back the server went; what it still
        # serves must be the chain we verified (else it is a fork, not a restore).
        response = _expect((yield Request("GET", f"{org_path}/roster", query={"since": "0"})), 200)
        try:
            versions = [SignedRoster.parse(b64d(v)) for v in response.body["versions"]]
            verify_chain(versions)
        except (RosterError, KeyError, TypeError, ValueError) as exc:
            raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
        if versions and versions[-1].roster.version < trusted.roster.version:
            served = versions[-1].roster.version
        if (
            trusted.roster.version - 1 == served
            and versions
            and trusted.roster.prev != versions[-1].hash
        ):
            raise ServerMisbehaved("the served roster chain forks from the verified one")
        raise RosterRollback(served, trusted.roster.version)
    try:
        newest = verify_chain(versions, trusted=trusted)
    except RosterError as exc:
        raise ServerMisbehaved(f"the served roster chain is not acceptable: {exc}") from exc
    fresh = [v for v in versions if v.roster.version > trusted.roster.version]
    return newest, fresh


def repair_roster_flow(
    *, org_path: str, chain: list[SignedRoster], served: int
) -> Generator[Request | Checkpoint, Response | None, int]:
    """Re-post the verified versions a restored server lost (coordinators); returns how many.

    Harmless whoever calls it: each version is coordinator-signed and must extend the
    server's chain (a restored server becomes a re-upload, never a wipe).
    """
    posted = 0
    for version in sorted(chain, key=lambda v: v.roster.version):
        if version.roster.version <= served:
            continue
        body = {"roster": b64e(version.to_bytes())}
        _expect((yield Request("POST", f"{org_path}/roster", body)), 200, 201)
        posted += 1
    return posted


def _verified_enrollment(
    device: dict[str, Any], roster: SignedRoster
) -> tuple[Enrollment, bytes] | None:
    """(enrollment, invite signer) if bound to an invite signed by a coordinator of ``roster``."""
    try:
        enrollment, _ = Enrollment.parse_and_verify(b64d(device["enrollment"]))
        invite_doc = SignedDocument.parse(b64d(device["invite"]), Purpose.INVITE_SIGNATURE)
    except (VerificationFailed, KeyError, TypeError, ValueError):
        return None
    signer = roster.roster.member(invite_doc.signer)
    if signer is None or signer.role is not Role.COORDINATOR:
        return None
    try:
        invite = Invite.verify(invite_doc, signer.signing_key)
    except (VerificationFailed, InviteError):
        return None
    if not enrollment.matches(invite) or enrollment.org_id != roster.roster.org_id:
        return None
    return enrollment, invite_doc.signer


@dataclass(frozen=True, slots=True)
class Admission:
    """What `admit_flow` did: the newest roster, the enrollments that vouch for devices
    pending admission, the devices admitted now, and why others were not."""

    roster: SignedRoster
    verified: tuple[Enrollment, ...]
    admitted: tuple[tuple[bytes, bytes], ...]  # (invite id, device id)
    refused: tuple[str, ...]


def admit_flow(
    *,
    org_path: str,
    trusted: SignedRoster,
    signing_key: SigningKey,
    invite_secrets: Mapping[bytes, bytes],
) -> Generator[Request | Checkpoint, Response | None, Admission]:
    """Admit the devices enrolled with invites this coordinator issued (PROTOCOL §6.5, §15.7).

    ``invite_secrets`` maps the id of each unused invite this coordinator signed to its
    secret.  A device is admitted only if its enrollment is bound to such an invite and its
    sealed label opens with the secret (proof that the enrolling party held the secret: the
    server, which holds only the secret's hash, cannot enroll a key of its own), and if no
    other enrollment claims the same invite (an invite admits at most one device).  Field
    devices join as field members, coordinators with the HPKE key they enrolled with.
    Enrollments bound to any coordinator's invite are returned as ``verified``: readers may
    show their content, flagged as pending admission (§6.6).
    """
    response = _expect((yield Request("GET", f"{org_path}/devices")), 200)
    me = signing_key.verify_key.key_id
    verified: list[Enrollment] = []
    claims: dict[bytes, list[Enrollment]] = {}
    refused: list[str] = []
    for device in response.body.get("devices", []):
        found = _verified_enrollment(device, trusted)
        if found is None:
            continue
        enrollment, issuer = found
        verified.append(enrollment)
        if trusted.roster.member(enrollment.device_id) is None and issuer == me:
            claims.setdefault(enrollment.invite_id, []).append(enrollment)
    roster = trusted.roster
    admitted: list[tuple[bytes, bytes]] = []
    for invite_id, enrollments in sorted(claims.items()):
        secret = invite_secrets.get(invite_id)
        if secret is None:
            continue  # already used, or not ours to admit
        proven = [e for e in enrollments if _holds_secret(e, secret)]
        if len(proven) != 1 or len(enrollments) != 1:
            refused.append(
                f"invite {invite_id.hex()[:12]}: {len(enrollments)} enrollments,"
                f" {len(proven)} proving the invite secret; none admitted"
            )
            continue
        enrollment = proven[0]
        member = Member(
            enrollment.device_id,
            enrollment.signing_key,
            enrollment.role,
            enrollment.kem_key if enrollment.role is Role.COORDINATOR else None,
        )
        roster = roster.with_member(member)
        admitted.append((invite_id, enrollment.device_id))
    if not admitted:
        return Admission(trusted, tuple(verified), (), tuple(refused))
    candidate = roster.next_version(trusted).sign(signing_key)
    _expect(
        (yield Request("POST", f"{org_path}/roster", {"roster": b64e(candidate.to_bytes())})),
        200,
        201,
    )
    return Admission(candidate, tuple(verified), tuple(admitted), tuple(refused))


def _holds_secret(enrollment: Enrollment, secret: bytes) -> bool:
    try:
        open_label(
            enrollment.sealed_label,
            secret=secret,
            invite_id=enrollment.invite_id,
            device_id=enrollment.device_id,
        )
    except VerificationFailed:
        return False
    return True


def revoke_flow(
    *, org_path: str, trusted: SignedRoster, signing_key: SigningKey, device_id: bytes
) -> Generator[Request | Checkpoint, Response | None, SignedRoster]:
    """Revoke ``device_id`` at its current server watermark in a new roster version."""
    if trusted.roster.member(device_id) is None:
        raise KeyError("no such member in the roster")
    response = _expect((yield Request("GET", f"{org_path}/devices")), 200)
    watermark = 0
    for device in response.body.get("devices", []):
        if device.get("device_id") == b64e(device_id):
            watermark = int(device.get("watermark") or 0)
    candidate = (
        trusted.roster.revoke(device_id, after_seq=watermark)
        .next_version(trusted)
        .sign(signing_key)
    )
    _expect(
        (yield Request("POST", f"{org_path}/roster", {"roster": b64e(candidate.to_bytes())})),
        200,
        201,
    )
    return candidate


# --- coordinators: verify, decrypt, merge --------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """Something a coordinator must see: a gap, a fork, a revoked signer, a forgery."""

    kind: str
    device: bytes
    seq: int
    detail: str

    def text(self) -> str:
        return f"{self.kind}: device {self.device.hex()[:12]} seq {self.seq}: {self.detail}"


class CoordinatorView:
    """Verified, decrypted view of an organisation's envelopes (state is a function of the set)."""

    def __init__(
        self,
        *,
        roster: SignedRoster,
        kem_key: KemPrivateKey,
        enrollments: Iterable[Enrollment] = (),
        history: Iterable[SignedRoster] = (),
    ) -> None:
        self.roster = roster
        self.kem_key = kem_key
        # Verified roster versions by number: to check each epoch's recipients (§4.3 item 6).
        self.history = {v.roster.version: v.roster for v in (*history, roster)}
        self.enrollments = {e.device_id: e for e in enrollments}
        self.envelopes: dict[bytes, bytes] = {}
        self._chains: dict[bytes, dict[int, set[bytes]]] = {}
        self._prev: dict[bytes, bytes] = {}
        self._sender_keys: dict[tuple[bytes, int], tuple[ChainKey, int, ChainKey]] = {}
        self._waiting: dict[tuple[bytes, int], list[Envelope]] = {}
        self._dags: dict[bytes, ReportDag] = {}
        self._findings: set[Finding] = set()
        self.held: dict[bytes, bytes] = {}

    def update_trust(self, roster: SignedRoster, enrollments: Iterable[Enrollment] = ()) -> None:
        """Adopt a newer verified roster and enrollments, and retry held envelopes."""
        self.roster = roster
        self.history[roster.roster.version] = roster.roster
        self.enrollments.update({e.device_id: e for e in enrollments})
        held, self.held = self.held, {}
        for data in held.values():
            self.ingest(data)

    # -- author lookup
    def _author(self, device: bytes) -> tuple[VerifyKey, Member | None] | None:
        member = self.roster.roster.member(device)
        if member is not None:
            return member.signing_key, member
        enrollment = self.enrollments.get(device)
        if enrollment is not None:
            return enrollment.signing_key, None
        return None

    def ingest(self, data: bytes) -> bool:
        """Verify and take in one envelope; False if refused (a finding says why) or known."""
        try:
            envelope = parse_envelope(data)
        except MalformedEnvelope as exc:
            self._findings.add(Finding("malformed", b"", 0, exc.reason))
            return False
        header = envelope.header
        if envelope.id in self.envelopes:
            return False
        if header.org != self.roster.roster.org_id:
            self._findings.add(
                Finding("foreign", header.device, header.seq, "envelope of another organisation")
            )
            return False
        author = self._author(header.device)
        if author is None:
            # Held, not dropped: the enrollment or roster version may arrive later.
            self.held[envelope.id] = data
            return True
        try:
            envelope.verify_signature(author[0])
        except VerificationFailed:
            self._findings.add(Finding("forged", header.device, header.seq, "bad signature"))
            return False
        self.envelopes[envelope.id] = envelope.to_bytes()
        self._chains.setdefault(header.device, {}).setdefault(header.seq, set()).add(envelope.id)
        self._prev[envelope.id] = header.prev
        member = author[1]
        if member is not None and not member.accepts_seq(header.seq):
            self._findings.add(
                Finding(
                    "after-revocation",
                    header.device,
                    header.seq,
                    "signed after the device was revoked",
                )
            )
            return True
        if header.kind == "key":
            self._take_sender_key(envelope, author[0])
        else:
            self._take_revision(envelope, author[0])
        return True

    def _take_sender_key(self, envelope: Envelope, author: VerifyKey) -> None:
        header = envelope.header
        epoch_roster = self.history.get(header.roster_version)
        if epoch_roster is not None:
            expected = tuple(sorted(k.key_id for k in epoch_roster.recipients()))
            if header.recipients != expected:
                # Sealed to a key the roster did not list (or missing a coordinator): loud.
                self._findings.add(
                    Finding(
                        "wrong-recipients",
                        header.device,
                        header.seq,
                        f"epoch recipients differ from roster version {header.roster_version}",
                    )
                )
        if self.kem_key.public_key.key_id not in header.recipients:
            self._findings.add(
                Finding(
                    "not-addressed",
                    header.device,
                    header.seq,
                    "epoch not sealed to this coordinator",
                )
            )
            return
        try:
            ck0 = open_sender_key(envelope, author=author, recipient=self.kem_key)
        except VerificationFailed:
            self._findings.add(
                Finding("forged", header.device, header.seq, "sender key does not open")
            )
            return
        key = (header.device, header.seq)
        self._sender_keys[key] = (ck0, 0, ck0)
        for waiting in self._waiting.pop(key, []):
            self._take_revision(waiting, author)

    def _message_key(self, key: tuple[bytes, int], index: int) -> MessageKey:
        ck0, at, chain = self._sender_keys[key]
        if index <= at:
            at, chain = 0, ck0
        while at < index - 1:
            chain = chain.advance()[1]
            at += 1
        self._sender_keys[key] = (ck0, at, chain)
        return chain.advance()[0]

    def _take_revision(self, envelope: Envelope, author: VerifyKey) -> None:
        header = envelope.header
        assert header.report is not None and header.key_seq is not None
        key = (header.device, header.key_seq)
        if key not in self._sender_keys:
            self._waiting.setdefault(key, []).append(envelope)
            return
        try:
            message_key = self._message_key(key, header.seq - header.key_seq)
            content = ReportContent.decode(
                open_revision(envelope, author=author, message_key=message_key)
            )
        except (VerificationFailed, ContentError, ValueError):
            self._findings.add(
                Finding("unreadable", header.device, header.seq, "revision does not open")
            )
            return
        revision = Revision(envelope.id, header.report, header.parents, header.device, content)
        dag = self._dags.setdefault(header.report, ReportDag(header.report))
        try:
            dag.add(revision)
        except MergeError:
            self._findings.add(
                Finding("forged", header.device, header.seq, "inconsistent revision")
            )

    # -- queries
    def findings(self) -> list[Finding]:
        """Every finding, including gaps and forks in device chains (recomputed from the set)."""
        found = set(self._findings)
        for data in self.held.values():
            header = parse_envelope(data).header
            found.add(
                Finding("unknown-device", header.device, header.seq, "signer not in roster (held)")
            )
        for device, chain in self._chains.items():
            top = max(chain)
            for seq in range(1, top):
                if seq not in chain:
                    found.add(Finding("gap", device, seq, "missing from the device's chain"))
            for seq, ids in chain.items():
                if len(ids) > 1:
                    found.add(Finding("fork", device, seq, f"{len(ids)} different envelopes"))
                for envelope_id in ids:
                    prev = self._prev[envelope_id]
                    if seq > 1 and seq - 1 in chain and prev not in chain[seq - 1]:
                        found.add(Finding("fork", device, seq, "prev does not match the chain"))
        for device, chain in self._chains.items():
            if self.roster.roster.member(device) is None and device in self.enrollments:
                # PROTOCOL §6.6: readable, but only flagged, until a roster version lists it.
                found.add(
                    Finding(
                        "pending-admission",
                        device,
                        max(chain),
                        "content from a device not yet admitted into the roster",
                    )
                )
        for (device, key_seq), waiting in self._waiting.items():
            for envelope in waiting:
                found.add(
                    Finding(
                        "waiting-key",
                        device,
                        envelope.header.seq,
                        f"sender key at seq {key_seq} not seen",
                    )
                )
        return sorted(found)

    def reports(self) -> dict[bytes, ReportState]:
        return {report: dag.state() for report, dag in sorted(self._dags.items())}

    def report(self, report: bytes) -> ReportState | None:
        dag = self._dags.get(report)
        return dag.state() if dag is not None else None

    def watermark(self, device: bytes) -> int:
        chain = self._chains.get(device, {})
        seq = 0
        while seq + 1 in chain:
            seq += 1
        return seq


def pull_flow(
    view: CoordinatorView, *, org_path: str, cursor: str | None, page: int = 500
) -> Generator[Request | Checkpoint, Response | None, tuple[str | None, bool]]:
    """Pull the changes feed into ``view``; returns (cursor, whether the server went back in time).

    After each page the flow yields `Checkpoint("ChangesPulled", envelopes)` with
    the new envelopes; the driver persists them and the cursor (``view`` carries
    nothing else that must survive).
    """
    rewound = False
    while True:
        query = {"limit": str(page)}
        if cursor is not None:
            query["cursor"] = cursor
        response = yield Request("GET", f"{org_path}/changes", query=query, accept=CBOR_MEDIA_TYPE)
        assert response is not None
        if response.status == 409 and not rewound:
            rewound, cursor = True, None
            yield Checkpoint("ServerWentBackInTime")
            continue
        _expect(response, 200)
        if not isinstance(response.body, dict) or not isinstance(response.body.get("items"), list):
            raise ServerMisbehaved("the feed page is not a page")
        fresh: list[bytes] = []
        for item in response.body["items"]:
            data = item.get("envelope") if isinstance(item, dict) else None
            if not isinstance(data, bytes):  # the page is CBOR: envelopes are byte strings
                raise ServerMisbehaved("a feed item carries no envelope bytes")
            if view.ingest(data):
                fresh.append(data)
        cursor = response.body.get("cursor")
        yield Checkpoint("ChangesPulled", tuple(fresh))
        if not response.body.get("more"):
            return cursor, rewound


def verify_enrollment(code: InviteCode, body: Any) -> tuple[SignedRoster, Invite]:
    """Check the server's answer to an enrollment against the invite code.

    The roster chain must verify from genesis and pass through the fingerprint
    the invite code pins (so the server cannot hand over its own coordinator
    keys), and the invite document must be signed by a coordinator of that chain
    and match the code's id, secret and organisation.

    Raises:
        ServerMisbehaved: if anything does not match.
    """
    try:
        versions = [SignedRoster.parse(b64d(v)) for v in body["rosters"]]
        newest = verify_chain(versions, pinned_fingerprint=code.roster_fingerprint)
        document = SignedDocument.parse(b64d(body["invite"]), Purpose.INVITE_SIGNATURE)
    except (RosterError, VerificationFailed, KeyError, TypeError, ValueError) as exc:
        raise ServerMisbehaved(f"the server's roster or invite does not verify: {exc}") from exc
    signer = None
    for version in versions:
        member = version.roster.member(document.signer)
        if member is not None and member.role is Role.COORDINATOR:
            signer = member
    if signer is None:
        raise ServerMisbehaved("the invite is not signed by a coordinator of the pinned roster")
    try:
        invite = Invite.verify(document, signer.signing_key)
    except (VerificationFailed, InviteError) as exc:
        raise ServerMisbehaved("the invite signature does not verify") from exc
    if (
        invite.invite_id != code.invite_id
        or invite.org_id != code.org_id
        or invite.secret_hash != secret_hash(code.secret)
        or newest.roster.org_id != code.org_id
    ):
        raise ServerMisbehaved("the invite does not match the invite code")
    return newest, invite


def verified_chain(body: Any) -> list[SignedRoster]:
    """The roster versions of an enrollment answer (call after `verify_enrollment`)."""
    return [SignedRoster.parse(b64d(v)) for v in body["rosters"]]

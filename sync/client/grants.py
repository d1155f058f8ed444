"""Grants on the coordinator's side: the verified grant log, the keys granted to this
coordinator, and the flows that pull, make and post grants (PROTOCOL §19).

Rules:
* Every grant a coordinator sees is verified (`GrantLedger.add`): signed by a coordinator
  active in the roster version it names (a verified version), for this organisation.
  Grants to others are kept as the log of who granted which epochs to whom; grants to this
  coordinator (to its HPKE key, or to the recovery key it holds after a restore) are
  opened, and their keys wait for the key envelope they claim to be of
  (`crypto.accept_chain_key`, in the view: a grant cannot substitute a chain key).
* Refusals are findings, never silent; a document seen twice (a replay) changes nothing,
  and two grants of one epoch give one key.
* A coordinator grants an epoch it holds to a grantee (a coordinator, or the recovery
  key, §20.3) who is not among its recipients and to whom no verified grant gave it yet
  (`epochs_to_grant`), optionally only epochs whose key envelope it first stored at or
  after a date (its own clock: the protocol carries no time in a header, §19.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    KemPublicKey,
    Purpose,
    SignedDocument,
    SigningKey,
    VerificationFailed,
    VerifyKey,
    accept_chain_key,
    open_sender_key,
    parse_envelope,
)
from sync.client.events import GrantsPosted, GrantsPulled
from sync.client.findings import Finding
from sync.client.flow import Flow, Request, ServerMisbehaved, decode, expect
from sync.grant import Grant, GrantError, grant_id, make_grants, open_grant, peek_grant
from sync.grant_messages import MAX_GRANTS_PAGE, GrantList, GrantResponse
from sync.messages import b64encode
from sync.roster import Role, Roster

if TYPE_CHECKING:
    from sync.client.view import CoordinatorView

__all__ = [
    "GrantLedger",
    "LostEpoch",
    "chain_key_for",
    "epochs_to_grant",
    "post_grants_flow",
    "pull_grants_flow",
    "waiting_findings",
]


@dataclass
class GrantLedger:
    """The grants a coordinator holds, verified against the roster versions it verified."""

    org_id: bytes
    own_keys: Sequence[KemPrivateKey]  # its HPKE key, and the recovery key after a restore
    history: Mapping[int, Roster]
    accepted: dict[bytes, Grant] = field(default_factory=dict)
    refused: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)  # id: (signer, why)
    keys: dict[bytes, list[tuple[bytes, Grant]]] = field(default_factory=dict)  # epoch: [(CK0, by)]
    documents: dict[bytes, bytes] = field(default_factory=dict)  # every one given, by id

    def add(self, document: bytes) -> bool:
        """Verify one grant document; True if it gave this coordinator a key it lacked.
        A grant to any of ``own_keys`` is opened (the recovery key's too, §20.5)."""
        name = grant_id(document)
        if name in self.documents:
            return False  # a replay: nothing is counted twice
        self.documents[name] = document
        try:
            grant = peek_grant(document)
        except GrantError as exc:
            self.refused[name] = (b"", exc.reason)
            return False
        why = self._refusal(grant)
        if why is not None:
            self.refused[grant.id] = (grant.granter, why)
            return False
        recipient = next((k for k in self.own_keys if k.public_key.key_id == grant.grantee), None)
        if recipient is None:
            self.accepted[grant.id] = grant
            return False
        signer = self.history[grant.roster_version].member(grant.granter)
        assert signer is not None
        try:
            _, keys = open_grant(
                document, org_id=self.org_id, granter=signer.signing_key, recipient=recipient
            )
        except GrantError as exc:
            self.refused[grant.id] = (grant.granter, exc.reason)
            return False
        self.accepted[grant.id] = grant
        fresh = False
        for epoch, raw in sorted(keys.items()):
            candidates = self.keys.setdefault(epoch, [])
            fresh |= not candidates  # a second grant of one epoch is a spare, not a new key
            candidates.append((raw, grant))
        return fresh

    def _refusal(self, grant: Grant) -> str | None:
        if grant.org_id != self.org_id:
            return "the grant is for another organisation"
        roster = self.history.get(grant.roster_version)
        if roster is None:
            return f"the grant names roster version {grant.roster_version}, not verified here"
        member = roster.member(grant.granter)
        if member is None or member.role is not Role.COORDINATOR or member.revoked_after:
            return "the grant is not signed by an active coordinator of the version it names"
        try:
            SignedDocument.parse(grant.document, Purpose.GRANT_SIGNATURE).verify(member.signing_key)
        except VerificationFailed:
            return "the grant's signature does not verify"
        return None

    def retry(self) -> bool:
        """Verify again the grants refused for a roster version not verified then."""
        again = [i for i in self.refused if i in self.documents and i not in self.accepted]
        pending = [self.documents.pop(i) for i in again]
        for name in again:
            del self.refused[name]
        return any([self.add(d) for d in pending])

    def holders(self, epoch: bytes) -> set[bytes]:
        """HPKE key ids a verified grant gave ``epoch`` to."""
        return {g.grantee for g in self.accepted.values() if epoch in g.epochs()}

    def key(self, envelope: Envelope) -> ChainKey | None:
        """CK₀ of the key envelope ``envelope`` (signature verified by the caller) from a grant
        to this coordinator, accepted only if it is the key the signed header commits to
        (`crypto.accept_chain_key`) and the grant's entry names the same (device, c, m).
        A grant that fails this is refused, loudly; another grant of the epoch may serve."""
        header = envelope.header
        for raw, grant in self.keys.get(envelope.id, ()):
            if grant.id in self.refused:
                continue
            entry = next(e for e in grant.entries if e.key_envelope == envelope.id)
            try:
                if (entry.device, entry.seq, entry.commitment) != (
                    header.device,
                    header.seq,
                    header.commitment,
                ):
                    raise VerificationFailed()
                return accept_chain_key(envelope, raw)
            except VerificationFailed:  # KeyCommitmentMismatch is one
                self.refused[grant.id] = (
                    grant.granter,
                    f"its key for the epoch of device {header.device.hex()[:12]} seq"
                    f" {header.seq} is not the one the signed key envelope commits to",
                )
        return None

    def findings(self) -> list[Finding]:
        return [
            Finding("grant-refused", signer, 0, f"grant {grant_id.hex()[:12]}: {why}")
            for grant_id, (signer, why) in sorted(self.refused.items())
        ]

    def log(self) -> list[Grant]:
        """Every verified grant, oldest granter clock first: who granted which epochs to whom."""
        return sorted(self.accepted.values(), key=lambda g: (g.issued_at, g.id))


def chain_key_for(
    envelope: Envelope,
    author: VerifyKey,
    keys: Sequence[KemPrivateKey],
    ledger: GrantLedger,
) -> ChainKey | None:
    """CK₀ of a key envelope for this coordinator: its own wrap when one of ``keys`` (its
    HPKE key, and the recovery key after a restore) is a recipient, else a grant's (None if
    no usable grant is held yet). Either is checked against ``m``.

    Raises:
        KeyCommitmentMismatch, VerificationFailed: its own wrap (`crypto.open_sender_key`).
    """
    for key in keys:
        if key.public_key.key_id in envelope.header.recipients:
            return open_sender_key(envelope, author=author, recipient=key)
    return ledger.key(envelope)


@dataclass(frozen=True, slots=True, order=True)
class LostEpoch:
    """An epoch sealed only to keys that no active coordinator holds: no grant can come."""

    device: bytes
    seq: int
    revisions: int

    def text(self) -> str:
        return (
            f"device {self.device.hex()[:12]} seq {self.seq}: {self.revisions} revision(s)"
            " sealed only to coordinators no longer in the roster, and granted to no one"
            " still in it; no one can grant them"
        )


def waiting_findings(view: CoordinatorView) -> tuple[list[Finding], list[LostEpoch]]:
    """Revisions waiting for their sender key: ``waiting-key`` findings for keys that can
    still arrive (the key envelope is not seen yet, an active coordinator holds its epoch,
    by wrap or by grant, and can grant it, or only the recovery key holds it and a restore
    reads it), and the epochs no one can grant."""
    mine = {k.public_key.key_id for k in view.keys}
    roster = view.roster.roster
    # Who can grant: the active coordinators.  The recovery key is also a recipient, but
    # it is offline, split among trustees: an epoch only it holds waits for a restore.
    active = {m.kem_key.key_id for m in roster.active_coordinators() if m.kem_key} - mine
    recovery = roster.recovery.kem_key.key_id if roster.recovery is not None else None
    found: list[Finding] = []
    lost: list[LostEpoch] = []
    for (device, c), waiting in sorted(view._waiting.items(), key=lambda i: i[0]):
        held = [
            parse_envelope(view.envelopes[i]).header
            for i in sorted(view._chains.get(device, {}).get(c, ()))
        ]
        if len(held) != 1 or mine & set(held[0].recipients):
            # Not seen yet (or only another key envelope at that seq is: a fork).
            found += [
                Finding("waiting-key", device, e.header.seq, f"sender key at seq {c} not seen")
                for e in waiting
            ]
            continue
        header, epoch = held[0], next(iter(view._chains[device][c]))
        sealed_to = set(header.recipients) | view.grants.holders(epoch)
        holders = sealed_to & active
        if holders:
            found.append(
                Finding(
                    "waiting-key",
                    device,
                    c,
                    f"epoch not sealed to this coordinator: {len(waiting)} revision(s) wait"
                    f" for a grant from a coordinator who holds it ({len(holders)})",
                )
            )
        elif recovery is not None and recovery in sealed_to and recovery not in mine:
            found.append(
                Finding(
                    "waiting-key",
                    device,
                    c,
                    f"epoch held only by the recovery key: {len(waiting)} revision(s) wait for"
                    " a recovery restore (`sealbox recovery restore`, k trustees); no active"
                    " coordinator can grant it",
                )
            )
        else:
            lost.append(LostEpoch(device, c, len(waiting)))
    return found, lost


def epochs_to_grant(
    envelopes: Mapping[bytes, bytes],
    opened: Mapping[bytes, ChainKey],
    ledger: GrantLedger,
    recipient: KemPublicKey,
    *,
    first_seen: Mapping[bytes, int] | None = None,
    since: int | None = None,
) -> list[tuple[Envelope, ChainKey]]:
    """The epochs this coordinator holds (``opened``: key envelope id -> CK₀) that
    ``recipient`` lacks: not one of its recipients, and no verified grant gave it yet.
    With ``since``, only key envelopes this coordinator first stored at or after it."""
    out = []
    for key_envelope, chain_key in sorted(opened.items(), key=lambda i: i[0]):
        envelope = parse_envelope(envelopes[key_envelope])
        if recipient.key_id in envelope.header.recipients:
            continue
        if recipient.key_id in ledger.holders(envelope.id):
            continue
        if since is not None and (first_seen or {}).get(envelope.id, -1) < since:
            continue
        out.append((envelope, chain_key))
    return out


def pull_grants_flow(*, org_path: str, after: int, view: CoordinatorView) -> Flow[int]:
    """Pull the organisation's grants after position ``after`` into ``view``; one
    `GrantsPulled` per validated page. Returns the new position."""
    for _ in range(10_000):
        response = yield Request(
            "GET",
            f"{org_path}/grants",
            query={"after": str(after), "limit": str(MAX_GRANTS_PAGE)},
            max_answer_bytes=MAX_GRANTS_PAGE * 720 * 1024,
        )
        page = decode(expect(response, 200), GrantList, what="grants")
        seqs = [g.seq for g in page.grants]
        if seqs and (seqs != sorted(set(seqs)) or seqs[0] <= after):
            raise ServerMisbehaved("grants: the page is not in ascending order after the cursor")
        if not page.grants:
            return after
        view.add_grants(g.grant for g in page.grants)
        # The position passes only grants that verified: after a refused one (forged, or
        # naming a roster version not verified yet) the next sync asks from there again,
        # so a forgery served in place of a grant cannot make the client skip the grant.
        refused = [g.seq for g in page.grants if grant_id(g.grant) in view.grants.refused]
        after = refused[0] - 1 if refused else seqs[-1]
        yield GrantsPulled(tuple(g.grant for g in page.grants), max(after, 0))
        if refused or not page.more:
            return after
    return after


def post_grants_flow(
    *,
    org_path: str,
    org_id: bytes,
    roster_version: int,
    issued_at: int,
    epochs: list[tuple[Envelope, ChainKey]],
    recipient: KemPublicKey,
    signing_key: SigningKey,
) -> Flow[list[Grant]]:
    """Make the grants of ``epochs`` to ``recipient`` and post them; `GrantsPosted`."""
    if not epochs:
        return []
    grants = make_grants(
        org_id=org_id,
        roster_version=roster_version,
        issued_at=issued_at,
        epochs=epochs,
        recipient=recipient,
        signing_key=signing_key,
    )
    for grant in grants:
        body = {"grant": b64encode(grant.document)}
        decode(
            expect((yield Request("POST", f"{org_path}/grants", body)), 200, 201),
            GrantResponse,
            what="grant",
        )
    yield GrantsPosted(tuple(g.document for g in grants), recipient.key_id)
    return grants

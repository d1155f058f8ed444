"""The coordinator's verified, decrypted view of an organisation (PROTOCOL §4.5, §15.5).

Rules:
* The view is a function of the *set* of envelopes it holds: two coordinators with
  the same envelopes show the same reports and findings, whatever the order.
* Before content is shown every envelope passes §4.5: signature by a roster member
  or by a device vouched for by an invite-bound enrollment (held, not dropped, until
  one of them vouches), the revocation point, the chain position, the epoch's
  recipients against the roster version it names, and the body opens.
* Findings are never hidden: gaps and forks per device chain, forgeries, revisions
  after revocation, content pending admission, keys not seen (or grantable: `waiting-key`;
  never grantable: `lost_epochs`, PROTOCOL §19.5), refused grants, sender keys whose
  commitment does not match (`key-commitment-mismatch`). A granted key opens an epoch like
  its own wrap (`chain_key_for`; `crypto.accept_chain_key` is the one commitment check).
* A revision opens only with the key envelope at (device, c) of the device's own chain:
  the one its signed `h` links lead to, or the only one held at (device, c) while links
  are missing; with a fork at c and no links, it is not opened (PROTOCOL §4.3). A fork
  makes that guess order-dependent, so a late link of a forked chain takes all in again.
* Every report carries a verification state (`ReportVerification`); exports leave out
  content that is not verified unless asked, and then mark it.
"""

from __future__ import annotations

from collections.abc import Iterable

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    KeyCommitmentMismatch,
    MalformedEnvelope,
    MessageKey,
    VerificationFailed,
    VerifyKey,
    open_revision,
    parse_envelope,
)
from sync.client.findings import (
    KCM,
    KCM_KIND,
    VERIFICATION_STATES,
    Finding,
    ReportVerification,
    chain_findings,
)
from sync.client.grants import GrantLedger, LostEpoch, chain_key_for, waiting_findings
from sync.invite import Enrollment
from sync.merge import MergeError, ReportDag, ReportState, Revision
from sync.report import ContentError, ReportContent
from sync.roster import Member, SignedRoster

__all__ = ["VERIFICATION_STATES", "CoordinatorView", "Finding", "ReportVerification"]

_KCM_KIND, _KCM = KCM_KIND, KCM


class CoordinatorView:
    """Verified, decrypted view of an organisation's envelopes (state is a function of the set)."""

    def __init__(
        self,
        *,
        roster: SignedRoster,
        kem_key: KemPrivateKey,
        enrollments: Iterable[Enrollment] = (),
        history: Iterable[SignedRoster] = (),
        also_keys: Iterable[KemPrivateKey] = (),  # the recovery key after a restore (§20.4)
        grants: Iterable[bytes] = (),
    ) -> None:
        self.roster = roster
        self.kem_key, self.keys = kem_key, (kem_key, *also_keys)  # + recovery key (§20.4)
        # Verified roster versions by number: to check each epoch's recipients (§4.3 item 6).
        self.history = {v.roster.version: v.roster for v in (*history, roster)}
        self.grants = GrantLedger(roster.roster.org_id, self.keys, self.history)
        for document in grants:
            self.grants.add(document)
        self.enrollments = {e.device_id: e for e in enrollments}
        self._refused: set[Finding] = set()  # about envelopes not taken in (kept by replays)
        self.held: dict[bytes, bytes] = {}
        self._replaying = False
        # Reports whose rows may differ since the caller last looked (all after a replay).
        self.changed: set[bytes] = set()
        self.changed_all = False
        self._clear()

    def _clear(self) -> None:
        """Forget everything derived from the envelopes taken in."""
        self.envelopes: dict[bytes, bytes] = {}
        self._findings: set[Finding] = set()
        self._chains: dict[bytes, dict[int, set[bytes]]] = {}
        self._forked: set[bytes] = set()  # devices with two envelopes at one seq somewhere
        self._prev: dict[bytes, bytes] = {}
        # By key envelope id: CK0 and the ratchet's last position; ids whose commitment failed.
        self._sender_keys: dict[bytes, tuple[ChainKey, int, ChainKey]] = {}
        self._mismatched: set[bytes] = set()
        self._marks: dict[bytes, list[ChainKey]] = {}
        self._anchor: dict[bytes, tuple[int, bytes]] = {}  # revision id -> (c, key envelope id)
        self._waiting: dict[tuple[bytes, int], list[Envelope]] = {}
        self._dags: dict[bytes, ReportDag] = {}
        # The same DAGs with only revisions by roster members (what exports show by default).
        self._member_dags: dict[bytes, ReportDag] = {}
        self._report_flags: dict[bytes, set[tuple[str, bytes]]] = {}  # (reason, its device)
        self._epochs: set[tuple[bytes, int]] = set()  # (device, roster version) of sender keys
        self._plain: dict[bytes, bytes] = {}  # revision id -> its decrypted content, canonical

    def _replay(self) -> bool:
        """Take every envelope in again in chain order, when a second sender key at one seq
        may change which revisions open: the view must not depend on arrival order."""
        if self._replaying:
            return False
        self._replaying, stored = True, list(self.envelopes.values())
        self._clear()
        self.changed_all = True
        try:
            for envelope in sorted(map(parse_envelope, stored), key=lambda e: e.header.seq):
                self.ingest(envelope)
        finally:
            self._replaying = False
        return True

    def update_trust(self, roster: SignedRoster, enrollments: Iterable[Enrollment] = ()) -> None:
        """Adopt a newer verified roster and more enrollments: only the devices whose standing
        changes are judged again (`sync.client.retrust`), and held envelopes are retried."""
        from sync.client.retrust import retrust  # noqa: PLC0415 - it works on this class

        enrolled = {**self.enrollments, **{e.device_id: e for e in enrollments}}
        history = {**self.history, roster.roster.version: roster.roster}
        retrust(self, roster, enrolled.values(), history)  # grants verified again there

    def add_grants(self, documents: Iterable[bytes]) -> bool:
        """Verify grants (§19); True if one gave a key, and then the epochs it keys open."""
        from sync.client.retrust import open_granted  # noqa: PLC0415 - it works on this class

        if (fresh := any([self.grants.add(d) for d in documents])) and self.envelopes:
            open_granted(self)
        return fresh

    # -- author lookup
    def _author(self, device: bytes) -> tuple[VerifyKey, Member | None] | None:
        member = self.roster.roster.member(device)
        if member is not None:
            return member.signing_key, member
        enrollment = self.enrollments.get(device)
        if enrollment is not None:
            return enrollment.signing_key, None
        return None

    def ingest(self, data: bytes | Envelope) -> bool:
        """Verify and take in one envelope (its bytes, or those already parsed); False if
        refused (a finding says why) or known."""
        if isinstance(data, Envelope):
            envelope = data
        else:
            try:
                envelope = parse_envelope(data)
            except MalformedEnvelope as exc:
                self._refused.add(Finding("malformed", b"", 0, exc.reason))
                return False
        header = envelope.header
        if envelope.id in self.envelopes:
            return False
        if header.org != self.roster.roster.org_id:
            self._refused.add(
                Finding("foreign", header.device, header.seq, "envelope of another organisation")
            )
            return False
        author = self._author(header.device)
        if author is None:
            # Held, not dropped: the enrollment or roster version may arrive later.
            self.held[envelope.id] = envelope.to_bytes()
            return True
        try:
            envelope.verify_signature(author[0])
        except VerificationFailed:
            self._refused.add(Finding("forged", header.device, header.seq, "bad signature"))
            return False
        self.envelopes[envelope.id] = envelope.to_bytes()
        if header.report is not None:
            self.changed.add(header.report)
        slot = self._place(header.device, header.seq, envelope.id, header.prev)
        member = author[1]
        if member is not None and not member.accepts_seq(header.seq):
            if header.report is not None:
                self._flag(header.report, "after-revocation", header.device)
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
            if len(slot) == 1 or not self._replay():
                self._take_sender_key(envelope, author[0])
        elif not (self._walks_stopped_here(envelope) and self._replay()):
            self._take_revision(envelope, author[0])
        return True

    def _place(self, device: bytes, seq: int, envelope_id: bytes, prev: bytes) -> set[bytes]:
        """Put an envelope at (device, seq) of its chain; the ids held there now."""
        slot = self._chains.setdefault(device, {}).setdefault(seq, set())
        slot.add(envelope_id)
        if len(slot) > 1:
            self._forked.add(device)
        self._prev[envelope_id] = prev
        return slot

    def _walks_stopped_here(self, envelope: Envelope) -> bool:
        """A late link of a forked chain: later walks to their key (`_key_envelope`) stopped
        short of it, and one that took the only key held at c may have taken another chain's.
        Late links are rare in a feed (one per out-of-order run), so the fork is looked for
        only then."""
        device = envelope.header.device
        return device in self._forked and envelope.header.seq + 1 in self._chains[device]

    def _take_sender_key(self, envelope: Envelope, author: VerifyKey) -> None:
        header = envelope.header
        self._epochs.add((header.device, header.roster_version))
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
        try:
            ck0 = chain_key_for(envelope, author, self.keys, self.grants)
        except KeyCommitmentMismatch:
            self._mismatched.add(envelope.id)
            self._findings.add(Finding(_KCM_KIND, header.device, header.seq, _KCM))
        except VerificationFailed:
            self._findings.add(
                Finding("forged", header.device, header.seq, "sender key does not open")
            )
            return
        else:
            if ck0 is None:
                return  # its revisions wait for a grant; `findings` says whether one can come
            self._sender_keys[envelope.id] = (ck0, 0, ck0)
        for waiting in self._waiting.pop((header.device, header.seq), []):
            self._take_revision(waiting, author)

    def _key_envelope(self, envelope: Envelope) -> bytes | None:
        """The id of the key envelope at (d, c) that opens this revision, None if not known.

        Its own signed links decide when they are all held (h names n-1, whose h names
        n-2, ... down to c); otherwise the only envelope held at (d, c). A fork at c without
        links opens nothing: which key is meant is not known (PROTOCOL §4.3)."""
        header = envelope.header
        assert header.report is not None and header.key_seq is not None
        chain, c = self._chains[header.device], header.key_seq
        link, seq = header.prev, header.seq - 1
        while seq > c and link in chain.get(seq, ()):
            anchor = self._anchor.get(link)
            if anchor is not None and anchor[0] == c:
                link, seq = anchor[1], c
            else:
                link, seq = self._prev[link], seq - 1
        if seq == c:
            self._anchor[envelope.id] = (c, link)
            return link
        slot = chain.get(c, set())
        if len(slot) > 1:
            self._findings.add(
                Finding("fork", header.device, header.seq, f"which sender key at seq {c}: unknown")
            )
            self._flag(header.report, "sealed under a forked sender key", header.device)
        return next(iter(slot)) if len(slot) == 1 else None

    def _message_key(self, key: bytes, index: int) -> MessageKey:
        # Every chain key walked is kept (32 bytes each): a shuffled feed walks each once.
        chain = self._marks.setdefault(key, [self._sender_keys[key][0]])  # CK0, CK1, ...
        while len(chain) < index:
            chain.append(chain[-1].advance()[1])
        return chain[index - 1].advance()[0]

    def _take_revision(self, envelope: Envelope, author: VerifyKey) -> None:
        header = envelope.header
        assert header.report is not None and header.key_seq is not None
        self.changed.add(header.report)
        key = self._key_envelope(envelope)
        if key in self._mismatched:
            self._flag(header.report, "key-commitment-mismatch", header.device)
            detail = f"sealed under the sender key at seq {header.key_seq}: {_KCM}"
            self._findings.add(Finding(_KCM_KIND, header.device, header.seq, detail))
            return
        if key is None or key not in self._sender_keys:
            if key is not None or len(self._chains[header.device].get(header.key_seq, ())) < 2:
                self._waiting.setdefault((header.device, header.key_seq), []).append(envelope)
            return
        try:
            message_key = self._message_key(key, header.seq - header.key_seq)
            plain = open_revision(envelope, author=author, message_key=message_key)
            content = ReportContent.decode(plain)
        except (VerificationFailed, ContentError, ValueError):
            self._flag(header.report, "a revision does not open", header.device)
            self._findings.add(
                Finding("unreadable", header.device, header.seq, "revision does not open")
            )
            return
        revision = Revision(envelope.id, header.report, header.parents, header.device, content)
        self._plain[envelope.id] = plain  # what a snapshot keeps, without encoding it again
        dag = self._dags.setdefault(header.report, ReportDag(header.report))
        try:
            dag.add(revision)
        except MergeError:
            self._flag(header.report, "an inconsistent revision", header.device)
            self._findings.add(
                Finding("forged", header.device, header.seq, "inconsistent revision")
            )
            return
        if self.roster.roster.member(header.device) is not None:
            self._member_dags.setdefault(header.report, ReportDag(header.report)).add(revision)
        else:
            self._flag(header.report, "pending-admission", header.device)

    def _flag(self, report: bytes, reason: str, device: bytes) -> None:
        self.changed.add(report)
        self._report_flags.setdefault(report, set()).add((reason, device))

    # -- queries
    def findings(self) -> list[Finding]:
        """Every finding, including gaps and forks in device chains (recomputed from the set)."""
        found = self._findings | self._refused
        for data in self.held.values():
            header = parse_envelope(data).header
            found.add(
                Finding("unknown-device", header.device, header.seq, "signer not in roster (held)")
            )
        found |= chain_findings(
            self._chains,
            self._prev,
            is_member=lambda d: self.roster.roster.member(d) is not None,
            enrolled=self.enrollments,
        )
        return sorted(found | set(waiting_findings(self)[0]) | set(self.grants.findings()))

    def lost_epochs(self) -> list[LostEpoch]:  # sealed to keys no active coordinator holds
        return waiting_findings(self)[1]

    def reports(self, *, include_unverified: bool = True) -> dict[bytes, ReportState]:
        """Merged reports; without ``include_unverified``, only roster members' revisions."""
        dags = self._dags if include_unverified else self._member_dags
        return {report: dag.state() for report, dag in sorted(dags.items())}

    def revisions(self, report: bytes) -> list[Revision]:
        """The report's decrypted, verified revisions, by id (its history)."""
        dag = self._dags.get(report)
        return [] if dag is None else sorted(dag.revisions.values(), key=lambda r: r.id)

    def report_ids(self, *, include_unverified: bool = True) -> list[bytes]:
        """The ids `reports` would give, without merging any report."""
        return sorted(self._dags if include_unverified else self._member_dags)

    def report(self, report: bytes) -> ReportState | None:
        dag = self._dags.get(report)
        return dag.state() if dag is not None else None

    def verification(self, report: bytes) -> ReportVerification:
        """The report's verification state (`VERIFICATION_STATES`) and its reasons."""
        flags = {reason for reason, _ in self._report_flags.get(report, ())}
        for key, waiting in self._waiting.items():
            if any(e.header.report == report for e in waiting):
                flags.add(f"sender key at seq {key[1]} not seen")
        dag = self._dags.get(report)
        if dag is not None and any(
            p not in dag for revision in dag.revisions.values() for p in revision.parents
        ):  # what `ReportState.missing` lists, without folding the whole DAG again
            flags.add("parent revisions not seen")
        ranked = ("pending-admission", "after-revocation")  # the first one flagged names it
        state = next((s for s in ranked if s in flags), "with-findings" if flags else "verified")
        return ReportVerification(state, tuple(sorted(flags)))

    def message_key(self, revision: bytes) -> MessageKey | None:
        """MK_(n-c) that opened ``revision``, if it did (evidence bundles disclose it, §22)."""
        h = parse_envelope(self.envelopes[revision]).header if revision in self.envelopes else None
        if h is None or h.report is None or revision not in self._dags.get(h.report, ()):
            return None
        key = self._key_envelope(parse_envelope(self.envelopes[revision]))
        if key is None or key not in self._sender_keys or h.key_seq is None:
            return None
        return self._message_key(key, h.seq - h.key_seq)

    def watermark(self, device: bytes) -> int:
        chain = self._chains.get(device, {})
        seq = 0
        while seq + 1 in chain:
            seq += 1
        return seq

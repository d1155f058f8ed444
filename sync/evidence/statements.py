"""What a verified bundle proves, and what it only claims, in plain sentences (docs/EVIDENCE.md §5).

`proven` and `claimed` turn a `VerifiedBundle` into the lines `sealbox evidence verify` prints
and the summary repeats.  They add nothing the checks did not establish: every proven line
names the check behind it, every claimed line says whose word it is.
"""

from __future__ import annotations

from sync.evidence.facts import VerifiedBundle
from sync.roster import format_fingerprint

__all__ = ["claimed", "proven"]


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def proven(v: VerifiedBundle) -> list[str]:
    logged = sum(1 for r in v.revisions.values() if r.logged is not None)
    included = sum(1 for a in v.attachments.values() if a.included)
    devices = sorted({r.device for r in v.revisions.values()})
    return [
        f"roster chain: versions 1-{v.roster_version}, each signed by an active coordinator of"
        f" the version before it (genesis {format_fingerprint(v.genesis_fingerprint)}, newest"
        f" {format_fingerprint(v.fingerprint)}); it pins the server key {v.server_key_id.hex()}",
        f"manifest: signed by coordinator {v.exporter.hex()}, active in roster version"
        f" {v.roster_version}; it covers every section of the bundle",
        f"signatures: {_n(len(v.revisions), 'revision')} of {_n(len(v.reports), 'report')},"
        f" each signed by its device ({_n(len(devices), 'device')}, all roster members, none"
        " past a revocation point)",
        "content: each revision's body opens under its disclosed message key with its signed"
        " header as associated data, to the content shown (ChaCha20-Poly1305, RFC 8439)",
        "history: every parent a revision names is in the bundle (each report's history is"
        " complete up to the revisions disclosed)",
        f"attachments: {included} of {len(v.attachments)} included, each matching the size and"
        " SHA-256 stated inside its signed revision",
        f"log: {logged} of {len(v.revisions)} revisions are in a checkpoint signed by the"
        f" pinned server key ({_n(len(v.checkpoints), 'checkpoint')}, RFC 9162 inclusion"
        " proofs): the server had stored them by the time it signed",
    ]


def claimed(v: VerifiedBundle) -> list[str]:
    out = [
        "device clocks: the time each revision says it was written is its device's clock,"
        " signed by the device but not checked by anyone",
        f"export time: {v.exported_at} (Unix seconds) is the exporting coordinator's clock",
        "server clocks: a checkpoint's time is the server's clock, signed by the server;"
        " it bounds when the server stored a revision only as far as the server is honest",
        "key commitment: that each disclosed message key is MK(n-c) of the chain key the author"
        " committed to in its key envelope is the exporter's signed statement; the bundle"
        " holds no chain key, so it cannot be recomputed here. Proven regardless: the signed"
        " body opens to this content under this key, and no one but the author could have"
        " made a body that opens to other content under another key (ChaCha20-Poly1305 is not"
        " key-committing); a coordinator holding the chain key can re-derive it",
        "completeness: later revisions of these reports, if any, are not shown; the log proves"
        " what the server held, not that nothing followed",
    ]
    if any(m.label for m in v.members.values()):
        out.append("device labels: the names shown for devices are the exporter's statement")
    missing = [a for a in v.attachments.values() if not a.included]
    if missing:
        out.append(
            f"{_n(len(missing), 'attachment')} not included: only its signed name, size and"
            " SHA-256 are proven"
        )
    unlogged = [r for r in v.revisions.values() if r.logged is None]
    if unlogged:
        out.append(
            f"{_n(len(unlogged), 'revision')} without a server checkpoint in the bundle: when"
            " the server stored it is not shown"
        )
    return out

"""`sealbox checkpoint [show|compare|evidence]`: compare the server's log out of band (§17.4).

Theory of operation:
* The profile holds the newest checkpoint it verified (``meta["log_checkpoint"]``, kept by
  `sync`). `show` verifies it again with the server key of the trusted roster, for this
  organisation, and prints its short code (`Checkpoint.short_code`) for two people to read
  to each other by phone.
* `compare CODE` takes what the other person read out. Same size and same code: one view
  (strong, not conclusive evidence: ~53 bits). Same size and another code: a fork reported
  by phone, kept as a ``logfinding`` record of kind ``log-forked-reported`` with this side's
  signed checkpoint and the code entered, and a profile warning that `status` shows. A code
  of another size proves nothing without a consistency proof (PROTOCOL §17.4): the answer
  is which side is behind, "sync both and compare again", and nothing is recorded. When this
  side is ahead, an older signed checkpoint it kept of exactly that size (from a receipt or
  a finding) is compared instead, which is the same check.
* ``log-forked-reported`` is not ``log-forked``: a code read out is not a signed checkpoint
  (a misheard digit looks the same), so the finding says to get the other side's signed
  checkpoint. `compare` also takes that signed checkpoint itself (its base64url, from the
  other side's `sealbox checkpoint --json`); verified with the server key, a different root
  at the same size is the conclusive ``log-forked``, kept with both signed checkpoints.
* `evidence` lists every kept log finding (both checkpoints, sizes, codes), ``--json`` with
  the signed bytes, for an expert.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from typing import Annotated, Any

import typer

from clients.local.profile import Profile
from clients.reference_cli.common import Code, Exit, Home, Json, _errors, _out, _profile, _when, err
from clients.reference_cli.render import safe, shown
from crypto import Purpose, SignedDocument, VerificationFailed, encoding
from sync.checkpoint import CODE_DIGITS, Checkpoint
from sync.merkle import MAX_TREE_SIZE
from sync.messages import b64decode, b64encode
from sync.receipt import Receipt

__all__ = ["checkpoint_app", "parse_code"]

FORKED = "log-forked"
REPORTED = "log-forked-reported"
PHONE = "compared by phone"
OUT_OF_BAND = "compared out of band (signed checkpoint)"

checkpoint_app = typer.Typer(
    help="The server's log as this profile holds it: a short code to compare by phone."
)

_SEPARATORS = re.compile(r"[ \t\n\-.]+")
_LOOKALIKES = {c: "-" for c in (*range(0x2010, 0x2016), 0x2212)} | {0xA0: " ", 0x202F: " "}
"""Dashes and spaces a phone's keyboard types for ``-`` and `` ``."""
_SIGNED = re.compile(r"[A-Za-z0-9_-]{100,4000}")


def parse_code(text: str) -> tuple[int, str]:
    """``(size, "size:dddd-dddd-dddd-dddd")`` from what a person typed: ``13:7882-6044-3646-5216``,
    with spaces or dashes anywhere between the digits (``13: 7882 6044 3646 5216``), or with
    the size as the first group when the colon is left out (``13 7882 6044 3646 5216``).

    Raises:
        ValueError: for anything else (other characters, not 16 digits, a size out of range).
    """
    value = text.translate(_LOOKALIKES).strip()
    if not value or len(value) > 80 or not value.isascii():
        raise ValueError("a code looks like 13:7882-6044-3646-5216 (the size, then 16 digits)")
    if not value[0].isdigit():
        raise ValueError("a code starts with the log size, e.g. 13:7882-6044-3646-5216")
    if value.count(":") > 1:
        raise ValueError("a code has one colon, after the size: 13:7882-6044-3646-5216")
    if ":" in value:
        size_part, digits_part = value.split(":")
        size_text, digits_text = size_part.strip(), _SEPARATORS.sub("", digits_part)
    else:
        groups = [g for g in _SEPARATORS.split(value) if g]
        if len(groups) < 2:
            raise ValueError("write the size, a colon, then the 16 digits: 13:7882-6044-3646-5216")
        size_text, digits_text = groups[0], "".join(groups[1:])
    if not re.fullmatch(r"[0-9]{1,19}", size_text):
        raise ValueError("the code's size (before the colon) is a whole number, e.g. 13")
    if not re.fullmatch(f"[0-9]{{{CODE_DIGITS}}}", digits_text):
        raise ValueError(f"a code has {CODE_DIGITS} digits after the size, in groups of four")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise ValueError("the code's size is larger than any log can be")
    groups = [digits_text[i : i + 4] for i in range(0, CODE_DIGITS, 4)]
    return size, f"{size}:" + "-".join(groups)


def _held(profile: Profile) -> tuple[Checkpoint, bytes]:
    """The profile's newest checkpoint, verified again with the trusted roster's server key."""
    document = profile.meta.get("log_checkpoint")
    if document is None:
        raise Exit(
            Code.LOCAL,
            "this profile holds no checkpoint of the server's log yet: run `sealbox sync` first",
        )
    try:
        return _verify(profile, bytes(document)), bytes(document)
    except VerificationFailed:
        raise Exit(
            Code.LOCAL,
            "the held checkpoint does not verify with the server key of the trusted roster"
            " (the key changed?): run `sealbox sync` to get a new one",
        ) from None


def _verify(profile: Profile, document: bytes) -> Checkpoint:
    key = profile.roster.roster.server_key
    return Checkpoint.verify(document, key, org_id=profile.org_id)


def _describe(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "size": checkpoint.size,
        "code": checkpoint.short_code(),
        "issued_at": checkpoint.issued_at,
    }


def _print(lines: list[str]) -> None:
    sys.stdout.write("".join(safe(line) + "\n" for line in lines))


@checkpoint_app.callback(invoke_without_command=True)
def _default(ctx: typer.Context, home: Home = None, as_json: Json = False) -> None:
    """Show the newest verified checkpoint and its short code (also `sealbox checkpoint show`)."""
    if ctx.invoked_subcommand is None:
        show(home, as_json)


@checkpoint_app.command("show")
def show(home: Home = None, as_json: Json = False) -> None:
    """The newest checkpoint of the server's log this profile verified, and its short code.

    Read the code to the other person (a coordinator, a field worker) by phone, ask for
    theirs, and enter it with `sealbox checkpoint compare CODE`.  Sync both first.
    """
    with _errors(as_json), _profile(home) as profile:
        checkpoint, document = _held(profile)
        data = {**_describe(checkpoint), "checkpoint": b64encode(document)}
        _out(
            as_json,
            data,
            lambda: _print(
                [
                    f"log size  {checkpoint.size}"
                    f" (signed by the server {_when(checkpoint.issued_at)})",
                    f"code      {data['code']}",
                    "",
                    "Read this code to the other person and ask for theirs; then enter theirs with",
                    "  sealbox checkpoint compare 'THEIR CODE'",
                    "Both sync just before, so that both hold the newest log.",
                ]
            ),
        )


def _kept(profile: Profile, size: int) -> tuple[Checkpoint, bytes] | None:
    """An older signed checkpoint of exactly ``size`` this profile kept (receipts, findings)
    that verifies with the trusted server key, if any."""
    documents: list[bytes] = []
    key = profile.roster.roster.server_key
    for _, data in profile.store.items("receipt"):
        try:
            receipt = Receipt.verify(data, key, org_id=profile.org_id, device_id=profile.device_id)
        except VerificationFailed:
            continue
        documents.append(receipt.checkpoint)
    for _, payload in profile.store.items("logfinding"):
        record = encoding.decode(payload)
        documents += [bytes(record[k]) for k in ("held", "offered") if record.get(k)]
    for document in documents:
        try:
            checkpoint = _verify(profile, document)
        except VerificationFailed:
            continue
        if checkpoint.size == size:
            return checkpoint, document
    return None


def _keep(
    profile: Profile, kind: str, held: bytes, offered: bytes | None, code: str, where: str
) -> str:
    """Keep the finding as evidence (the `sync` record, with the code entered) and warn."""
    name = hashlib.sha256(held + (offered or code.encode())).hexdigest()[:32]
    record = {
        "kind": kind,
        "held": held,
        "offered": offered,
        "code": code,
        "where": where,
        "at": int(time.time()),
    }
    held_code = _verify(profile, held).short_code()
    if kind == FORKED:
        text = (
            f"log-forked: the other side's signed checkpoint ({code}) and this device's"
            f" ({held_code}) are two different logs of one size: the server showed you a split"
            " view (conclusive); both signed checkpoints are kept (`sealbox checkpoint evidence`)"
        )
    else:
        text = (
            f"log-forked-reported: the code read out by phone ({code}) differs from this"
            f" device's ({held_code}) for the same log size: unless a digit was misheard, the"
            " server showed you two different logs. Keep both devices; send the other side's"
            " `sealbox checkpoint --json` and this side's `sealbox checkpoint evidence --json`"
            " to someone you trust to check them"
        )
    with profile.store.transaction():
        profile.store.put_cbor("logfinding", name, record)
        profile.warn(text)
    return text


def _signed(profile: Profile, text: str) -> tuple[Checkpoint, bytes]:
    """The other side's signed checkpoint (base64url); raises `Exit` if it does not verify
    for this organisation."""
    value = text.strip()
    try:
        document = b64decode(value)
        return _verify(profile, document), document
    except (ValueError, VerificationFailed):
        raise Exit(
            Code.LOCAL,
            "that is not a checkpoint of this organisation signed by its server key"
            " (copied whole, from `sealbox checkpoint --json`?)",
        ) from None


@checkpoint_app.command("compare")
def compare(
    code: Annotated[
        str,
        typer.Argument(
            metavar="CODE",
            help="The code the other person read out, e.g. 13:7882-6044-3646-5216 (or their"
            " signed checkpoint, the base64url `checkpoint` of `sealbox checkpoint --json`).",
        ),
    ],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Compare the other side's code with this profile's checkpoint.

    Exit 0: the codes match.  Exit 5: the same log size with another code, a fork
    (recorded as evidence, shown by `status`).  Exit 1: the sizes differ, so nothing was
    compared: sync both and compare again.
    """
    entered: tuple[int, str] | None = None
    if not _SIGNED.fullmatch(code.strip()):
        try:  # a usage error, before the profile is opened
            entered = parse_code(code)
        except ValueError as exc:
            raise typer.BadParameter(f"{safe(code)!r}: {exc}", param_hint="CODE") from None
    with _errors(as_json), _profile(home) as profile:
        checkpoint, document = _held(profile)
        theirs = None if entered else _signed(profile, code)
        if theirs is not None:
            entered = (theirs[0].size, theirs[0].short_code())
        assert entered is not None
        size, their_code = entered
        against = "held"
        if size < checkpoint.size and (kept := _kept(profile, size)) is not None:
            (checkpoint, document), against = kept, "kept"
        mine = checkpoint.short_code()
        data: dict[str, Any] = {
            "held": _describe(checkpoint),
            "entered": their_code,
            "against": against,
            "recorded": None,
        }
        if size != checkpoint.size:
            data["result"] = "behind" if size > checkpoint.size else "ahead"
        elif (theirs[0].root == checkpoint.root) if theirs else (their_code == mine):
            data["result"] = "match"
        else:
            data["result"] = "forked"
            kind, where = (FORKED, OUT_OF_BAND) if theirs else (REPORTED, PHONE)
            data["recorded"] = kind
            data["finding"] = _keep(
                profile, kind, document, theirs[1] if theirs else None, their_code, where
            )
        _out(as_json, data, lambda: _compare_text(data, mine))
    if data["result"] == "forked":
        raise typer.Exit(int(Code.MISBEHAVED))
    if data["result"] != "match":
        raise typer.Exit(int(Code.LOCAL))


def _compare_text(data: dict[str, Any], mine: str) -> None:
    theirs, held = data["entered"], data["held"]
    result = data["result"]
    if result == "match":
        older = " (an older checkpoint this device kept)" if data["against"] == "kept" else ""
        _print([f"match: {theirs} is this device's code{older}: you see the same log."])
        if data["against"] == "kept":
            _print(["The other side is behind: both sync, then compare the newest codes."])
    elif result == "forked":
        err.print(f"[bold red]FORK[/] {shown(data['finding'])}", highlight=False)
    elif result == "behind":
        _print(
            [
                f"not compared: their log has {theirs.split(':')[0]} entries, this device's"
                f" checkpoint {held['size']} ({mine}): this device is behind.",
                "A code of another size proves nothing. Sync both, then compare again.",
            ]
        )
    else:
        _print(
            [
                f"not compared: this device holds a larger checkpoint ({mine}) than the code"
                f" read out ({theirs}) and kept none of that size: the other side is behind.",
                "A code of another size proves nothing. Sync both, then compare again.",
            ]
        )


def _evidence_entry(profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": record.get("kind"),
        "where": record.get("where"),
        "at": record.get("at"),
        "code_entered": record.get("code"),
    }
    for side in ("held", "offered"):
        document = record.get(side)
        if not document:
            entry[side] = None
            continue
        document = bytes(document)
        try:
            checkpoint = Checkpoint.from_cbor(
                SignedDocument.parse(document, Purpose.CHECKPOINT_SIGNATURE).unverified_body()
            )
            shape = _describe(checkpoint)
        except VerificationFailed:
            shape = {"size": None, "code": None, "issued_at": None}
        try:
            _verify(profile, document)
            verifies = True
        except VerificationFailed:
            verifies = False
        entry[side] = {**shape, "verifies": verifies, "checkpoint": b64encode(document)}
    return entry


@checkpoint_app.command("evidence")
def evidence(home: Home = None, as_json: Json = False) -> None:
    """The log findings this profile kept, with both checkpoints (--json: the signed bytes)."""
    with _errors(as_json), _profile(home) as profile:
        entries = [
            _evidence_entry(profile, encoding.decode(payload))
            for _, payload in profile.store.items("logfinding")
        ]
        entries.sort(key=lambda e: (e["at"] or 0, e["kind"] or ""))
        _out(as_json, {"count": len(entries), "findings": entries}, lambda: _evidence_text(entries))


def _side(value: dict[str, Any] | None, entered: object) -> str:
    if value is None:
        return f"code read out {entered}" if entered else "none"
    mark = "" if value["verifies"] else " (does not verify with the current server key)"
    return f"size {value['size']} code {value['code']}{mark}"


def _evidence_text(entries: list[dict[str, Any]]) -> None:
    if not entries:
        _print(["No log findings: this profile has seen nothing wrong with the server's log."])
        return
    lines = []
    for e in entries:
        lines += [
            f"{e['kind']} at {_when(e['at'])} ({e['where']})",
            f"  held    {_side(e['held'], None)}",
            f"  offered {_side(e['offered'], e['code_entered'])}",
        ]
    lines.append("`sealbox checkpoint evidence --json` gives the signed checkpoints for an expert.")
    _print(lines)

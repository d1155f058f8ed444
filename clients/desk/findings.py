"""What each finding and verification state means, and what the coordinator should do.

The texts are gettext message ids (English source): templates translate them with `_()`.
"""

from __future__ import annotations


def N_(text: str) -> str:
    """Marks ``text`` for extraction (pybabel -k N_); translated where it is shown."""
    return text


_STATE_LABELS: dict[str, str] = {
    "verified": N_("verified"),
    "pending-admission": N_("pending admission"),
    "after-revocation": N_("after revocation"),
    "with-findings": N_("with findings"),
    # An invite's state (PROTOCOL §6.7), on the invites page.
    "created": N_("open"),
    "used": N_("used"),
    "expired": N_("expired"),
    "cancelled": N_("cancelled"),
    # An attachment's state (`attachment_state`), on a report's page: keys that no report
    # or invite state takes.
    "pending": N_("not all on the server yet"),
    "complete": N_("on the server"),
    "carried": N_("carried here: opens with no server"),
}


def state_label(state: str) -> str:
    """A report's verification state, an invite's or an attachment's, as shown (a message
    id); an unknown state as it is."""
    return _STATE_LABELS.get(state, state)


_MEANINGS: dict[str, tuple[str, str]] = {
    "forged": (
        N_(
            "A revision's signature or content does not verify: someone other than the device"
            " wrote it, or it was altered."
        ),
        N_("Do not rely on it. Keep the evidence; ask the device's user by phone what they sent."),
    ),
    "gap": (
        N_("A device's chain is missing revisions: the server withheld them, or they were lost."),
        N_("Sync again later; if the gap stays, ask the device's user to sync, and note it."),
    ),
    "fork": (
        N_(
            "A device signed two different revisions at the same place in its chain: its key"
            " was copied, or the device was restored from a backup."
        ),
        N_("Treat the device as compromised: call its user, and revoke it if in doubt."),
    ),
    "unknown-device": (
        N_("A revision comes from a device that is not in the roster you verified."),
        N_("Check Devices: admit it only after comparing its code by phone."),
    ),
    "unreadable": (
        N_("A revision could not be decrypted with this coordinator's key."),
        N_("It may be sealed to another coordinator or to an old roster; ask the device to sync."),
    ),
    "malformed": (
        N_("An envelope could not be parsed."),
        N_("The server or a device sent garbage: keep syncing, and report it if it repeats."),
    ),
    "foreign": (
        N_("An envelope names another organisation."),
        N_("The server mixed organisations: tell the server's operator."),
    ),
    "pending-admission": (
        N_("Content from a device that is enrolled but not admitted into the roster yet."),
        N_("Compare the device's code by phone on the Devices page, then sync to admit it."),
    ),
    "after-revocation": (
        N_("Content a device signed after it was revoked."),
        N_("Do not rely on it: whoever holds the seized device may have written it."),
    ),
    "stale-roster": (
        N_("Content sealed to a roster version older than one that removed a coordinator."),
        N_("The removed coordinator can read it; the device was behind: ask it to sync."),
    ),
    "split-view": (
        N_("The server showed a device a log that is not the one it shows you."),
        N_("The server is lying to someone: keep the evidence and tell the organisation."),
    ),
    "with-findings": (
        N_("Some revision of this report comes with a finding."),
        N_("Read the findings listed with the report before relying on it."),
    ),
    "verified": (
        N_("Every revision verified against the roster."),
        N_("Nothing to do."),
    ),
}

_UNKNOWN = (N_("A problem the Desk has no explanation for yet."), N_("Read the detail."))


def explain(kind: str) -> tuple[str, str]:
    """(what it means, what to do) for a finding kind or verification state."""
    return _MEANINGS.get(kind, _UNKNOWN)

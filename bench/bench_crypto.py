"""Crypto benchmark: seal/open rates and bytes on the wire (see bench/README.md).

Run:  .venv/bin/python bench/bench_crypto.py [--seconds 2] [--coordinators 3]

Prints one JSON object:
* rates per second (single thread) for a 1 KiB report revision: seal (pad, encrypt, sign)
  and open (parse, verify the signature, decrypt, unpad); for a sender-key announcement to
  the coordinators: seal (one HPKE MLKEM768-X25519 wrap each, sign) and open (parse, verify,
  one HPKE unwrap); the coordinator's chain derivation; Argon2id key-file unwrap; attachment
  chunk throughput;
* bytes on the wire of one sealed 1 KiB report for an organisation of N coordinators: the
  revision envelope, the key envelope, the amortised cost per revision over 1, 10 and 100
  revisions of one epoch, and the naive alternative (an HPKE wrap of a fresh body key per
  coordinator per revision) with its ratio to ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import cryptography

from crypto import (
    ChainKey,
    KemPrivateKey,
    SigningKey,
    encoding,
    message_key_at,
    open_chunks,
    open_revision,
    open_sender_key,
    parse_envelope,
    seal_chunks,
    seal_revision,
    seal_sender_key,
    unwrap_keyfile,
    wrap_keyfile,
)
from crypto.suite import HPKE_SUITE

REPORT_SIZE = 1024


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(3):
        fn()
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--coordinators", type=int, default=3)
    args = parser.parse_args()

    device = SigningKey.generate()
    coordinators = [KemPrivateKey.generate() for _ in range(args.coordinators)]
    recipients = [c.public_key for c in coordinators]
    org, report = os.urandom(16), os.urandom(16)
    content = os.urandom(REPORT_SIZE)
    ck0 = ChainKey.generate()

    def seal_key() -> Any:
        return seal_sender_key(
            org=org,
            seq=1,
            prev=bytes(32),
            roster_version=1,
            chain_key=ck0,
            recipients=recipients,
            signing_key=device,
        )

    key_envelope = seal_key()
    key_bytes = key_envelope.to_bytes()
    message_key = message_key_at(ck0, 1)

    def seal_rev(parents: int = 0) -> Any:
        return seal_revision(
            org=org,
            report=report,
            parents=[os.urandom(32) for _ in range(parents)],
            seq=2,
            prev=key_envelope.id,
            roster_version=1,
            key_seq=1,
            message_key=message_key,
            content=content,
            signing_key=device,
        )

    revision_bytes = seal_rev().to_bytes()  # a new report: no parents
    edit_bytes = seal_rev(parents=1).to_bytes()  # an edit: one parent

    def open_rev() -> bytes:
        envelope = parse_envelope(revision_bytes)
        return open_revision(envelope, author=device.verify_key, message_key=message_key)

    def open_key() -> ChainKey:
        envelope = parse_envelope(key_bytes)
        return open_sender_key(envelope, author=device.verify_key, recipient=coordinators[0])

    assert open_rev() == content and open_key() == ck0

    # The naive alternative: the same (new-report) revision envelope plus, per coordinator,
    # an HPKE wrap of a fresh body key and its recipient id, on every revision.
    naive_wraps = [
        HPKE_SUITE.encrypt(message_key.raw, r._hpke_key(), info=b"naive") for r in recipients
    ]
    naive_extra = len(encoding.encode(naive_wraps)) + len(
        encoding.encode([r.key_id for r in recipients])
    )
    naive_per_revision = len(revision_bytes) + naive_extra

    amortised = {}
    for n in (1, 10, 100):
        ours = (len(key_bytes) + n * len(revision_bytes)) / n
        amortised[str(n)] = {
            "ours_bytes_per_revision": round(ours, 1),
            "naive_bytes_per_revision": naive_per_revision,
            "naive_over_ours": round(naive_per_revision / ours, 2),
        }

    keyfile = wrap_keyfile(os.urandom(160), b"correct horse battery staple")
    attachment_key, attachment_id = os.urandom(32), os.urandom(16)
    attachment = os.urandom(8 * 1024 * 1024)

    def stream_round_trip() -> None:
        chunks = list(seal_chunks(attachment_key, attachment_id, [attachment]))
        for _ in open_chunks(attachment_key, attachment_id, chunks):
            pass

    stream_rate = rate(stream_round_trip, args.seconds)

    result = {
        "machine": {
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "report_bytes": REPORT_SIZE,
        "coordinators": args.coordinators,
        "rates_per_second": {
            "revision_seal": round(rate(seal_rev, args.seconds)),
            "revision_open": round(rate(open_rev, args.seconds)),
            "sender_key_seal": round(rate(seal_key, args.seconds)),
            "sender_key_open": round(rate(open_key, args.seconds)),
            "chain_derive_mk_1000": round(rate(lambda: message_key_at(ck0, 1000), args.seconds)),
            "keyfile_unwrap_argon2id_64MiB_t3_p4": round(
                rate(
                    lambda: unwrap_keyfile(keyfile, b"correct horse battery staple"), args.seconds
                ),
                2,
            ),
        },
        "attachment_mib_per_second_seal_plus_open": round(8 * stream_rate, 1),
        "wire_bytes": {
            "revision_envelope": len(revision_bytes),
            "revision_envelope_edit_with_one_parent": len(edit_bytes),
            "revision_body": len(parse_envelope(revision_bytes).body),
            "revision_header": len(parse_envelope(revision_bytes).header_bytes),
            "key_envelope": len(key_bytes),
            "naive_revision_with_per_coordinator_wraps": naive_per_revision,
            "amortised_over_revisions_per_epoch": amortised,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

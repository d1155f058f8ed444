"""Convert transparency-dev/merkle's published RFC 6962/9162 test data into merkle_rfc9162.json.

Run from the repository root with the path of a clone (or bare mirror) of
https://github.com/transparency-dev/merkle (Apache-2.0):

    .venv/bin/python tests/vectors/import_rfc9162.py /path/to/merkle.git [commit]

What is copied is data only, re-encoded (base64 to lowercase hex, Sealbox's vector
convention, PROTOCOL §1.5), never code:
* testonly/constants.go: the eight standard leaf inputs, every perfect-subtree hash of the
  8-leaf tree (`NodeHashes`), the roots of sizes 0..8 (`RootHashes`) and the compact ranges
  (`CompactTrees`, our `Frontier`).
* cmd/proofgen/main.go: the inclusion and consistency proof tables inherited from the
  Certificate Transparency C++/Go reference implementations. Their leaf indices are 1-based
  there; they are written here 0-based, as RFC 9162 numbers leaves.
* testdata/inclusion/**.json and testdata/consistency/**.json: the generated probes (happy
  paths and mutations: each hash bit-flipped, truncated, extended, preceding and trailing
  garbage, wrong index, wrong size, swapped roots), each with its expected outcome.
The subtree* probes are not copied: Sealbox has no subtree proofs.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "merkle_rfc9162.json"


def main(repo: str, commit: str = "HEAD") -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={repo}", *args], check=True, capture_output=True, text=True
        ).stdout

    commit = git("rev-parse", commit).strip()
    constants = git("show", f"{commit}:testonly/constants.go")
    proofgen = git("show", f"{commit}:cmd/proofgen/main.go")

    def block(text: str, start: str) -> str:
        begin = text.index(start)
        return text[begin : text.index("\n}", begin)]

    leaves = re.findall(r'hd\("([0-9a-f]*)"\)', block(constants, "func LeafInputs"))
    levels = [
        re.findall(r'hd\("([0-9a-f]{64})"\)', level)
        for level in block(constants, "func NodeHashes").split("}, {")
    ]
    roots = re.findall(r'hd\("([0-9a-f]{64})"\)', block(constants, "func RootHashes"))
    roots.insert(
        0, re.findall(r'hd\("([0-9a-f]{64})"\)', block(constants, "func EmptyRootHash"))[0]
    )
    compact = []
    for line in block(constants, "func CompactTrees").splitlines()[3:]:
        refs = re.findall(r"nh\[(\d)\]\[(\d)\]", line)
        if "nil" in line or refs:
            compact.append([[int(a), int(b)] for a, b in refs])

    def table(name: str) -> list[dict[str, Any]]:
        begin = proofgen.index(f"\t{name} = ")
        body = proofgen[begin : proofgen.index("\n\n", begin)]
        rows = []
        for m in re.finditer(r"\{(\d+), (\d+), (nil|\[\]\[\]byte\{(.*?)\})\}", body, re.S):
            proof = re.findall(r'dh\("([0-9a-f]{64})", 32\)', m.group(4) or "")
            rows.append((int(m.group(1)), int(m.group(2)), proof))
        return rows  # type: ignore[return-value]

    vectors: list[dict[str, Any]] = []
    for size, root in enumerate(roots):
        vectors.append({"type": "root", "size": size, "root": root})
    for level, hashes in enumerate(levels):
        for index, value in enumerate(hashes):
            vectors.append({"type": "node", "level": level, "index": index, "hash": value})
    for size, refs in enumerate(compact):
        vectors.append({"type": "frontier", "size": size, "nodes": refs})
    for one_based, size, proof in table("inclusionProofs"):  # type: ignore[misc]
        vectors.append(
            {"type": "inclusion_table", "index": one_based - 1, "size": size, "proof": proof}
        )
    for old, new, proof in table("consistencyProofs"):  # type: ignore[misc]
        vectors.append(
            {"type": "consistency_table", "old_size": old, "new_size": new, "proof": proof}
        )

    def hx(b64: str) -> str:
        return base64.b64decode(b64).hex()

    names = git(
        "ls-tree", "-r", "--name-only", commit, "testdata/inclusion", "testdata/consistency"
    ).split()
    for name in sorted(names):
        probe = json.loads(git("show", f"{commit}:{name}"))
        entry: dict[str, Any] = {"file": name, "desc": probe["desc"], "ok": not probe["wantErr"]}
        if name.startswith("testdata/inclusion/"):
            entry.update(
                type="inclusion_probe",
                index=probe["leafIdx"],
                size=probe["treeSize"],
                leaf_hash=hx(probe["leafHash"]),
                root=hx(probe["root"]),
            )
        else:
            entry.update(
                type="consistency_probe",
                old_size=probe["size1"],
                new_size=probe["size2"],
                old_root=hx(probe["root1"]),
                new_root=hx(probe["root2"]),
            )
        entry["proof"] = [hx(p) for p in probe["proof"] or []]
        vectors.append(entry)

    document = {
        "description": "RFC 6962/9162 Merkle tree test data of transparency-dev/merkle, "
        "re-encoded as hex (tests/vectors/import_rfc9162.py)",
        "protocol": "RFC 9162 §2.1; Sealbox _draft_tlog (PROTOCOL §17)",
        "source": f"https://github.com/transparency-dev/merkle at {commit}",
        "licence": "Apache License 2.0, Copyright Google LLC (the data is unchanged but for "
        "encoding and 0-based table indices)",
        "leaves": leaves,
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT.name} ({len(vectors)} vectors)")


if __name__ == "__main__":
    main(*sys.argv[1:3])

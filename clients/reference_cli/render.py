"""Safe rendering of untrusted text: terminals, spreadsheets.

Everything a report holds was written by a field device that may have been seized,
so it is hostile input to the coordinator's own tools:
* `safe` shows control characters, bidirectional overrides and other invisible
  format characters escaped (``\\x1b``, ``\\u202e``), so a value cannot move the
  cursor, recolour the terminal, or make text read backwards (Trojan Source).
* `csv_writer` writes through `defusedcsv`, which neutralises cells starting with
  ``=``, ``+``, ``-``, ``@``, tab or carriage return (the OWASP CSV-injection rule),
  so a value cannot become a live formula in the coordinator's spreadsheet.
JSON exports are exact: JSON has no formulas and escapes control characters itself.
"""

from __future__ import annotations

import unicodedata
from typing import Any, TextIO

from defusedcsv import csv  # type: ignore[import-untyped]

__all__ = ["csv_writer", "safe"]


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: object) -> str:
    """``text`` with every control or format character (Cc, Cf, Cs, Co, Zl, Zp) escaped."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(
        _escape(c)
        if c != " " and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")
        else c
        for c in value
    )


def csv_writer(handle: TextIO) -> Any:
    """A CSV writer whose cells cannot be read as formulas by a spreadsheet."""
    return csv.writer(handle)

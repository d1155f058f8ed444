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

Rich consoles parse ``[...]`` as markup: untrusted text printed through one goes
through `shown` (escaped, markup neutralised) or `cell` (a `rich.text.Text`, never
parsed), so a value cannot restyle the output or end it with a MarkupError.
`console` makes the consoles: when the stream is not a terminal, lines are never
wrapped (a script or a log gets each message on one line, whatever its length).
"""

from __future__ import annotations

import os
import sys
import unicodedata
from typing import Any, TextIO

from defusedcsv import csv  # type: ignore[import-untyped]
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

__all__ = ["cell", "console", "csv_writer", "plural", "progress", "safe", "shown"]

UNWRAPPED_WIDTH = 100_000
"""Console width when the output is not a terminal: wide enough that nothing wraps."""


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


def shown(text: object) -> str:
    """``text`` escaped (`safe`) and with rich markup neutralised, to embed in a markup string."""
    return escape(safe(text))


def cell(text: object) -> Text:
    """``text`` escaped (`safe`) as a table cell that rich never parses as markup."""
    return Text(safe(text))


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 report``, ``2 reports`` (``many`` for irregular plurals)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def console(*, stderr: bool = False) -> Console:
    """A console on stdout or stderr that does not wrap lines unless it writes to a terminal.

    On a terminal rich wraps at the terminal's width; elsewhere it would wrap at 80
    columns (or $COLUMNS), cutting messages mid-sentence in logs and pipes.
    """
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)


def progress(*, quiet: bool, transfer: bool, console: Console | None = None) -> Progress:
    """The CLI's progress bar on stderr: bytes and speed for transfers, else items and time."""
    columns: list[ProgressColumn] = [TextColumn("[progress.description]{task.description}")]
    columns.append(BarColumn())
    if transfer:
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns += [MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=console, disable=quiet, transient=False)

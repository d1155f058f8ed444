"""The `sealbox` executable: imports the CLI with the cyclic garbage collector paused, then runs it.

Importing the CLI builds some 90,000 tracked objects (modules, classes, pydantic schemas)
and little garbage (a collection afterwards finds under a thousand), yet the collector walks
them again and again while they are made: about a sixth of `sealbox --help`'s time.
`gc.freeze` then keeps them out of the collections the command's own work triggers (the use
the gc module documents for objects that live as long as the process).
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from clients.reference_cli.main import app
    finally:
        gc.freeze()
        gc.enable()
    app()

"""The `sealbox` executable: imports the CLI with the cyclic garbage collector paused, then runs it.

Importing the CLI builds some 400,000 objects (modules, classes, pydantic schemas) and no
garbage, yet the collector walks them again and again while they are made: about a tenth of
every command's start-up.  `gc.freeze` then keeps them out of the collections the command's
own work triggers (the use the gc module documents for objects that live as long as the
process).
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

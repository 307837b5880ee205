"""The ``--closed-loop`` option, shared by ``replay`` and ``report`` (one name, one help string)."""

from __future__ import annotations

from typing import Annotated

import typer

ClosedLoopOpt = Annotated[bool, typer.Option(
    "--closed-loop",
    help="send each later turn of a session (session_id, think_s) when its previous turn has finished plus "
         "its think_s, as agents and users do; first turns keep their trace arrival "
         "(default: every request at its trace arrival)")]

"""``--config scenario.yaml``: a verb's options from a file, flags on the command line overriding it.

One mechanism for every verb that takes it (plan, replay, autoscale-compare, power, experts): the file is
a mapping of option names (as on the command line, without ``--``; ``-`` or ``_`` alike) to values, read
before the other options and handed to the command as its defaults, so each value goes through the same
typed validation as the flag, and a flag given on the command line wins. Keys the verb does not have are
refused with the file, the key and the verb's options named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from traces.errors import InputError


def load_scenario(path: Path, known: dict[str, str], verb: str) -> dict[str, Any]:
    """The option defaults a scenario file sets, by parameter name; ``known`` maps each flag name a key may
    use (``replicas``, ``json``, ``slo_ttft_ms`` ...) to its parameter.

    Raises:
        InputError: unreadable YAML, not a mapping, or a key ``verb`` does not take.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the scenario ({exc.strerror})", path=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML{where}", path=str(path), expected="a mapping of options") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("a scenario is a mapping of options", path=str(path),
                         expected=f"option: value lines of `fleetwise {verb}`")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).strip().lstrip("-").replace("-", "_")
        if name not in known:
            raise InputError(f"unknown option {key!r} for `fleetwise {verb}`", path=str(path), field=str(key),
                             expected=", ".join(sorted(k.replace("_", "-") for k in known)))
        out[known[name]] = value
    return out


def _apply(ctx: typer.Context, _param: Any, value: Path | None) -> Path | None:
    if value is None:
        return None
    known = {opt.lstrip("-").replace("-", "_"): p.name
             for p in ctx.command.params if p.name and "--config" not in p.opts
             for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}
    scenario = load_scenario(value, known, ctx.info_name or "verb")
    ctx.default_map = {**(ctx.default_map or {}), **scenario}
    return value


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", is_eager=True, callback=_apply, show_default=False,
    help="YAML file of this verb's options (names as on the command line); flags given here override it")]
"""The ``--config`` option every scenario verb declares (processed before its other options)."""

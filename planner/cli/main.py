"""Entry point of the ``fleetwise`` console script.

Each verb lives in its own module of :mod:`planner.cli` with a ``register(app)`` function; the explicit
tuple :data:`VERB_MODULES` wires them up (no import-time self-registration). Bad input of any kind
(:class:`~traces.errors.InputError`) becomes one clear line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import sys
from typing import Annotated

import click
import typer
from rich.console import Console

from planner.cli.verbs import VERBS
from traces.errors import InputError


def _classes(name: str) -> tuple[type[BaseException], ...]:
    """Every class called ``name`` that a usage error or an exit can raise: click's own, typer's
    (``typer.Exit``/``typer.Abort``), and the click copy typer 0.26 and later vendors (``typer._click``),
    whose classes are not click's, so catching click's alone lets them through as tracebacks."""
    found: list[type[BaseException]] = []
    sources: list[object] = [click.exceptions, typer]
    with contextlib.suppress(ImportError):
        sources.append(importlib.import_module("typer._click.exceptions"))
    for src in sources:
        cls = getattr(src, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


_EXIT = _classes("Exit")
_ABORT = _classes("Abort")
_CLICK_ERROR = _classes("ClickException")
_USAGE_ERROR = _classes("UsageError")
_NO_ARGS = _classes("NoArgsIsHelpError")


def version() -> str:
    """The installed distribution's version (``unknown`` when run from a source tree not installed)."""
    try:
        return importlib.metadata.version("fleetwise")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"fleetwise {version()}")
        raise typer.Exit(0)

VERB_MODULES: tuple[str, ...] = tuple(module for module, _summary in VERBS.values())


def _listed() -> None:
    """Stands in for a verb in ``fleetwise --help`` (never run: naming the verb loads the real one)."""


def verb_of(argv: list[str]) -> str | None:
    """The verb a command line names (its first word that is not an option), if it is one of :data:`VERBS`.

    >>> verb_of(["traces", "inspect", "t.csv"]), verb_of(["--version"]), verb_of(["nosuch"])
    ('traces', None, None)
    """
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in VERBS else None


def build_app(modules: tuple[str, ...] = VERB_MODULES) -> typer.Typer:
    """A fresh Typer app with the verbs of ``modules`` registered (every verb by default; tests build
    their own)."""
    app = typer.Typer(
        name="fleetwise",
        help="Trace-driven capacity planner and autoscaler for LLM inference clusters.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )


    @app.callback()
    def _root(
        show_version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                                   help="print the version and exit")] = False,
    ) -> None:
        """Trace-driven capacity planner and autoscaler for LLM inference clusters."""

    for name in modules:
        importlib.import_module(name).register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failed check, 2 bad input or usage."""
    args = sys.argv[1:] if argv is None else argv
    verb = verb_of(args)
    if verb is not None:
        app = build_app((VERBS[verb][0],))
    elif not args or args in (["--help"], ["-h"]):
        app = build_app(())  # the verb list from the table: no verb's module imported
        for name, (_module, text) in VERBS.items():
            app.command(name, help=text)(_listed)
    else:
        app = build_app()
    try:
        result = app(args=args, standalone_mode=False)
    except InputError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        return 2
    except _EXIT as exc:
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except _ABORT:
        return 130
    except _NO_ARGS as exc:
        exc.show()  # type: ignore[attr-defined]  # the help page
        return 2
    except _USAGE_ERROR as exc:
        ctx = getattr(exc, "ctx", None)
        where = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
        Console(stderr=True).print(f"[bold red]error:[/] {exc.format_message()}{where}",  # type: ignore[attr-defined]
                                   highlight=False, soft_wrap=True, markup=True)
        return 2
    except _CLICK_ERROR as exc:
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

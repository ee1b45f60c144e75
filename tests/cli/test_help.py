"""`--help` reads cleanly in an 80-column terminal: no `<bool>`, no word broken across lines."""

from __future__ import annotations

import itertools

import pytest
from typer.main import get_command

from orchestration.cli.main import app
from tests.cli.helpers import run_cli


def _commands() -> list[tuple[str, ...]]:
    """Every command path: (), ("sync",), …, ("webhooks", "serve"), …"""
    paths: list[tuple[str, ...]] = [()]

    def walk(command: object, prefix: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(get_command(app), ())
    return paths


def _texts() -> str:
    """Everything a help page is made of: help texts, option names, choices and defaults."""
    texts: list[str] = []

    def walk(command: object) -> None:
        texts.append(getattr(command, "help", None) or "")
        for param in getattr(command, "params", []):
            texts.extend([getattr(param, "help", None) or "", *param.opts, *param.secondary_opts])
            choices = getattr(getattr(param, "type", None), "choices", None) or []
            values = [str(getattr(choice, "value", choice)) for choice in choices]
            texts.extend([*values, "<" + "|".join(values) + ">", str(param.default)])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(get_command(app))
    return " ".join(texts)


COMMANDS = _commands()
TEXTS = _texts()


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "stripe-sync" for p in COMMANDS])
def test_help_fits_80_columns_without_bool_or_broken_words(path: tuple[str, ...]) -> None:
    done = run_cli(*path, "--help", env={"COLUMNS": "80"})
    assert done.code == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert "<bool>" not in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    # A word the wrapper cut in two: the end of one line and the start of the next, glued
    # together, are one word of the definitions ("new-onl" + "y>", "import-" + "existing").
    for line, following in itertools.pairwise(lines):
        if not line or not following:
            continue
        glued = (line.split()[-1] + following.split()[0]).strip("[](),.;:")
        assert len(glued) < 6 or glued not in TEXTS, f"{glued!r} is broken:\n{done.stdout}"

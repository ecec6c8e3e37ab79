"""The README's command lines are true: each names a real command, only its real options, and all required ones."""

from __future__ import annotations

import re
from pathlib import Path

import typer

REPO = Path(__file__).resolve().parents[2]


def _commands():
    from edge.cli import app

    return typer.main.get_command(app)


def _readme_command_spans() -> list[str]:
    """Every `lpbf-edge ...` code span of the README's tables, split where one span shows several commands."""
    rows = [
        line
        for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `lpbf-edge")
    ]
    spans = [s for row in rows for s in re.findall(r"`(lpbf-edge [^`]+)`", row)]
    out = []
    for span in spans:
        for part in re.split(r" / (?=[a-z])|, (?=lpbf-edge )", span.replace("\\|", "|")):
            out.append(part if part.startswith("lpbf-edge ") else None)
    return [s for s in out if s]


def _is_group(cmd) -> bool:
    """A command with subcommands (typer vendors its own click, so duck-typed)."""
    return hasattr(cmd, "commands")


def _resolve(group, words: list[str]) -> tuple:
    """The (sub)command the leading words name, and the words consumed."""
    cmd, used = group, []
    for w in words:
        if _is_group(cmd) and w in cmd.commands:
            cmd = cmd.commands[w]
            used.append(w)
        else:
            break
    return cmd, used


def test_readme_commands_exist_with_their_options():
    root = _commands()
    spans = _readme_command_spans()
    assert len(spans) >= 15, spans
    checked = 0
    for span in spans:
        words = span.split()[1:]
        cmd, used = _resolve(root, words)
        assert used and not _is_group(cmd) or "/" in span, f"README names no runnable command: {span!r}"
        if _is_group(cmd):
            continue  # 'train autoencoder / pixel / ...' lists several subcommands of a group
        opts = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span))
        assert named <= opts, f"{span!r}: {sorted(named - opts)} are not options of `lpbf-edge {' '.join(used)}`"
        required = {p.opts[0] for p in cmd.params if p.param_type_name == "option" and p.required}
        assert required <= named, f"{span!r} leaves out the required {sorted(required - named)}"
        checked += 1
    assert checked >= 15


def test_readme_quickstart_is_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make demo", "make test"]

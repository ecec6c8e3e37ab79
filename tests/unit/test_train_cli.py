"""The train commands are module functions, wired into `lpbf-edge train`, with their shared options declared once."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from edge.train import cli


def _app() -> typer.Typer:
    app = typer.Typer()
    cli.register(app)
    return app


def test_every_module_command_is_registered_under_train():
    """Each COMMANDS entry answers `train NAME --help` with its own docstring."""
    runner = CliRunner()
    for name, fn in cli.COMMANDS:
        r = runner.invoke(_app(), ["train", name, "--help"], terminal_width=200)
        assert r.exit_code == 0, r.output
        assert fn.__doc__.split(";")[0].split("(")[0].strip()[:30] in " ".join(r.output.split()), name


def test_bad_grain_gain_is_a_usage_error_not_a_traceback(tmp_path):
    """A shared option parsed in _cfg: `--grain-gain 2,1` stops with exit 2 and says what it wants."""
    pytest.importorskip("torch")
    r = CliRunner().invoke(_app(), ["train", "diffusion", "--ae", str(tmp_path / "ae.pt"), "--out", str(tmp_path),
                                    "--grain-gain", "2,1"], terminal_width=200)
    assert r.exit_code == 2, r.output
    assert "0 < LO <= HI" in " ".join(r.output.split())
    assert not (tmp_path / "last.pt").exists()

"""scripts/reliability_table.py renders the rows the fault tests write into docs/reliability.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.reliability import layer_counts, record

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("reliability_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_counts_and_render(tmp_path, monkeypatch):
    assert layer_counts([1, 2, 3], [1, 1, 3]) == {"produced": 3, "received": 2, "lost": 1, "duplicated": 1}
    monkeypatch.setenv("LPBF_RELIABILITY_DIR", str(tmp_path / "rows"))
    record("b | fault", "replay", "msg /tmp/pytest-of-x/y/z/file.png", exit_code=3, **layer_counts([1, 2], [1, 2, 2]))
    record("a fault", "commands", "refused")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- reliability-table:begin -->\nold\n<!-- reliability-table:end -->\nafter\n")
    mod = _script()
    assert mod.main(["--rows", str(tmp_path / "rows"), "--doc", str(doc), "--check"]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")][1:]
    assert rows[0].startswith("| commands | a fault |") and "b \\| fault" in rows[1]
    assert "| 2 | 2 | 0 | 1 | 3 |" in rows[1] and ".../file.png" in rows[1]
    record("c", "delivery", "gone", produced=2, received=1, lost=1, duplicated=0)
    assert mod.main(["--rows", str(tmp_path / "rows"), "--doc", str(doc), "--check"]) == 1

"""Bounded inputs: pixel limit from the header before decoding, per-file failures (MemoryError too) never stop a
batch, trace CSVs with a UTF-8 BOM."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edge.cli import app
from edge.image_limits import ImageTooLarge, check_pixels, header_size
from firmware_bridge.errors import TraceError
from firmware_bridge.sources.replay import read_trace
from tests.reliability import record


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, w: int, h: int, complete: bool = True) -> Path:
    """A valid all-black 8-bit grey PNG of w x h streamed through zlib (a few hundred kB even at 20000x20000)."""
    z, row = zlib.compressobj(9), b"\x00" * (w + 1)
    idat = b"".join(z.compress(row) for _ in range(h if complete else 1)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bounds")
    rng = np.random.default_rng(0)
    good = d / "00002.png"
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(good)
    return {"huge": huge_png(d / "00001.png", 20000, 20000), "good": good,
            "header_only": huge_png(d / "claims.png", 9000, 9000, complete=False)}


def test_limit_is_read_from_the_header(files):
    """A file whose data is cut short still reports its declared size: nothing was decoded."""
    assert header_size(files["header_only"]) == (9000, 9000)
    with pytest.raises(ImageTooLarge, match=r"\(81 MP\)"):
        check_pixels(files["header_only"], 64)
    assert check_pixels(files["header_only"], 100) == (9000, 9000)
    assert check_pixels(files["good"], 0.005) == (64, 64)


@pytest.mark.parametrize("cmd", ["analyze", "segment"])
def test_huge_input_refused_and_the_batch_goes_on(cmd, files, tmp_path):
    """Issue 16.6: analyze on 20000x20000 raised MemoryError and never reached the next file."""
    r = CliRunner().invoke(app, [cmd, str(files["huge"]), str(files["good"]), "--out", str(tmp_path)])
    assert r.exit_code == 1, r.output
    line = next(ln for ln in r.output.splitlines() if "00001.png" in ln)
    assert "20000x20000" in line and "64 MP" in line
    assert (tmp_path / "00002.png").exists() and "1 of 2 input(s) failed" in r.output
    record(f"{cmd} on a 20000x20000 PNG (+1 good file)", "bad input", line, exit_code=r.exit_code, produced=2,
           received=1)


@pytest.mark.parametrize("cmd", ["analyze", "segment"])
def test_memory_error_on_one_file_is_reported_and_the_batch_goes_on(cmd, files, tmp_path, monkeypatch):
    """Whatever runs out of memory inside one file's work, the file is named and the next file still runs."""
    from edge.analyze import layer, segment

    real = {"analyze": layer.LayerAnalyzer.analyze, "segment": segment.Segmenter.segment}[cmd]

    def flaky(self, img, *args, **kwargs):
        if img.shape == (64, 64) and not getattr(flaky, "done", False):
            flaky.done = True
            raise MemoryError()
        return real(self, img, *args, **kwargs)

    target = layer.LayerAnalyzer if cmd == "analyze" else segment.Segmenter
    monkeypatch.setattr(target, cmd if cmd == "analyze" else "segment", flaky)
    second = tmp_path / "in" / "00003.png"
    second.parent.mkdir()
    second.write_bytes(files["good"].read_bytes())
    r = CliRunner().invoke(app, [cmd, str(files["good"]), str(second), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1
    line = next(ln for ln in r.output.splitlines() if "out of memory" in ln)
    assert str(files["good"]) in line
    assert (tmp_path / "out" / "00003.png").exists() and not (tmp_path / "out" / "00002.png").exists()
    record(f"MemoryError during {cmd} of one file of two", "bad input", line, exit_code=r.exit_code, produced=2,
           received=1)


def test_sr_refuses_over_the_limit_and_goes_on(files, tmp_path):
    """`lpbf-edge sr` checks the same header limit before decoding (9000x9000 needed ~9.7 GiB before)."""
    pytest.importorskip("torch")
    from tests.sr_fixtures import tiny_bundle

    r = CliRunner().invoke(app, ["sr", str(files["header_only"]), str(files["good"]), "--out", str(tmp_path),
                                 "--model", str(tiny_bundle())])
    assert r.exit_code == 1
    line = next(ln for ln in r.output.splitlines() if "claims.png" in ln)
    assert "9000x9000" in line and "over the 64 MP input limit" in line
    assert Image.open(tmp_path / "00002.png").size == (256, 256)
    record("sr on a PNG declaring 9000x9000 (+1 good file)", "bad input", line, exit_code=r.exit_code, produced=2,
           received=1)
    r = CliRunner().invoke(app, ["sr", str(files["good"]), "--out", str(tmp_path / "b"), "--model", str(tiny_bundle()),
                                 "--max-mp", "0.001"])
    assert r.exit_code == 1 and "over the 0.001 MP input limit" in r.output


def test_trace_csv_with_utf8_bom(tmp_path):
    """Issue 16.6: Excel's "CSV UTF-8" starts with a BOM; it used to be refused as 'lacks time_s'."""
    p = tmp_path / "excel.csv"
    p.write_bytes("\ufefftime_s,laser_v\r\n0.0,0.1\r\n0.001,5.0\r\n".encode())
    t, v = read_trace(p)
    assert t.tolist() == [0.0, 0.001] and v.tolist() == [0.1, 5.0]
    record("laser trace CSV with a UTF-8 BOM (Excel)", "bad input", "accepted: 2 samples", exit_code=0)
    bad = tmp_path / "bad.csv"
    bad.write_bytes("time_s\u200b,laser_v\n0,1\n".encode())
    with pytest.raises(TraceError, match=r"'time_s\\u200b'"):
        read_trace(bad)

"""Job ids: one validator for commands, config, state and archive; archive paths never leave the store root."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edge.config import parse_config
from edge.publish.commands import CommandError, parse_command
from edge.store.archive import LayerArchive
from edge.store.jobs import InvalidJobId, check_job_id
from edge.store.retention import apply_retention
from edge.store.spool import PublishSpool, SpoolMessage
from edge.store.state import BoxState

BAD = ["..", ".", ".hidden", "a/b", "a\\b", "", "x" * 65, "a b", "J+1", "a#", "x\x00y", "../../etc"]
GOOD = ["J", "B-17", "job_0001", "a..b", "v1.2", "9"]


@pytest.mark.parametrize("job", BAD)
def test_bad_job_ids_refused_everywhere(job, tmp_path):
    """Commands, config, state and archive all refuse the same ids, each with a reason."""
    with pytest.raises(InvalidJobId):
        check_job_id(job)
    for cmd in ("set_job", "start_job"):
        with pytest.raises(CommandError, match="job"):
            parse_command(cmd, ('{{"job": {}}}'.format(__import__("json").dumps(job))).encode())
    with pytest.raises(Exception, match="node.job"):
        parse_config('node:\n  job: "{}"\n'.format(job.replace("\\", "\\\\").replace("\x00", "\\0")))
    with pytest.raises(ValueError):
        BoxState(tmp_path, "J", fsync=False).set_job(job)
    with pytest.raises(ValueError):
        LayerArchive(tmp_path, fsync=False).layer_dir(job, 1)
    with pytest.raises(ValueError):
        PublishSpool(tmp_path, fsync=False).put([SpoolMessage("t", b"x", "text/plain", b"u", job, 1, "meta")])
    assert not [p for p in tmp_path.rglob("*.msg")]


@pytest.mark.parametrize("job", GOOD)
def test_good_job_ids_accepted(job, tmp_path):
    assert check_job_id(job) == job
    assert parse_command("set_job", (f'{{"job": "{job}"}}').encode()).job == job
    assert LayerArchive(tmp_path, fsync=False).layer_dir(job, 3).name == "000003"


def test_dotdot_reason_is_readable():
    with pytest.raises(CommandError, match=r"starts with '\.'"):
        parse_command("set_job", b'{"job": ".."}')


def test_state_file_with_bad_job_is_refused(tmp_path):
    """A tampered state.json naming '..' stops the box at start with the file named, not later in the archive."""
    (tmp_path / "state.json").write_text('{"job": "..", "active": true, "last_layer": {}}')
    with pytest.raises(ValueError, match="state.json"):
        BoxState(tmp_path, "J", fsync=False)


def test_symlinked_job_folder_cannot_lead_outside(tmp_path):
    """A job folder that is a symlink out of the archive is not written through, listed or deleted by retention."""
    outside = tmp_path / "outside"
    (outside / "000001").mkdir(parents=True)
    (outside / "000001" / "precious.txt").write_text("keep")
    root = tmp_path / "box"
    a = LayerArchive(root, fsync=False)
    os.symlink(outside, a.root / "evil")
    with pytest.raises(ValueError, match="outside the store root"):
        a.put_png("evil", 1, "lr", np.zeros((4, 4), np.uint8))
    assert [j for j, _, _ in a.layers()] == []
    apply_retention(a, PublishSpool(root, fsync=False), max_bytes=1, max_age_days=1e-9)
    assert (outside / "000001" / "precious.txt").read_text() == "keep"
    a.put_png("J", 1, "lr", np.zeros((4, 4), np.uint8))
    assert [(j, n) for j, n, _ in a.layers()] == [("J", 1)]


def test_latest_moves_forward_within_a_job(tmp_path):
    """anomaly/latest: behind in the same job is refused; a new job restarts; persisted across restarts."""
    s = BoxState(tmp_path, "A", fsync=False)
    assert [s.advance_latest("A", n) for n in (2, 3, 3, 1, 4)] == [True, True, True, False, True]
    assert s.advance_latest("B", 1) and s.advance_latest("A", 2)
    s2 = BoxState(tmp_path, "A", fsync=False)
    assert not s2.advance_latest("A", 1) and s2.latest == ("A", 2)

"""Cache of files derived from other files (fused ONNX graphs, compiled blobs): keyed and verified by sha256.

A derived file is named by the sha256 of its source (and of the recipe that makes it) and has a record
beside it holding its own sha256. Before use the file is hashed and compared with the record; a missing
record, a changed or truncated file, or a record for another source is rebuilt with a warning, never
loaded. Builds go to a temporary file in the same folder and are renamed into place under a file lock,
so concurrent processes and crashes never leave a half-written file under the final name.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("edge.cache")

FORMAT = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_cache_root() -> Path:
    """`$XDG_CACHE_HOME/lpbf-edge` (or `~/.cache/lpbf-edge`)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lpbf-edge"


class DerivedCache:
    """One folder of derived files; `get` returns a verified path, building (or rebuilding) it when needed."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @classmethod
    def default(cls, kind: str) -> DerivedCache:
        """The cache folder `default_cache_root()/<kind>`."""
        return cls(default_cache_root() / kind)

    def path_for(self, name: str, source_sha256: str, recipe: str = "", suffix: str = "") -> Path:
        """File name `<name>-<key>[suffix]`, key = sha256(source sha256 + recipe) cut to 20 hex digits."""
        key = hashlib.sha256(f"{source_sha256}:{recipe}".encode()).hexdigest()[:20]
        return self.folder / f"{name}-{key}{suffix}"

    @staticmethod
    def record_path(path: Path) -> Path:
        """The JSON record beside a derived file."""
        return path.with_name(path.name + ".sha256.json")

    def problem(self, path: Path, source_sha256: str, recipe: str = "") -> str | None:
        """Why the cached file cannot be used (None: it is intact); 'absent' when neither file nor record exists."""
        rec_path = self.record_path(path)
        if not path.exists() and not rec_path.exists():
            return "absent"
        if not path.exists():
            return "the file is missing (only its record is there)"
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
            want, src, rcp = str(rec["sha256"]), str(rec["source_sha256"]), str(rec.get("recipe", ""))
        except FileNotFoundError:
            return "it has no sha256 record (written by an older version or cut short)"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"its record {rec_path.name} is unreadable ({exc})"
        if src != source_sha256 or rcp != recipe:
            return "its record names another source or recipe"
        got = sha256_file(path)
        if got != want:
            return f"its sha256 {got[:12]}... differs from the recorded {want[:12]}... (changed or corrupt)"
        return None

    def get(self, name: str, source_sha256: str, build: Callable[[Path], object], recipe: str = "",
            suffix: str = "", force: bool = False) -> Path:
        """Path of the verified derived file; `build(tmp_path)` writes it when absent, damaged or `force`."""
        path = self.path_for(name, source_sha256, recipe, suffix)
        if not force and self.problem(path, source_sha256, recipe) is None:
            return path
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same file
            why = "rebuild requested" if force else self.problem(path, source_sha256, recipe)
            if why is None:
                return path
            if why == "absent":
                log.info("building cached %s", path.name, extra={"event": "cache_build", "path": str(path)})
            else:
                log.warning("cached %s is not used: %s; rebuilding it", path, why,
                            extra={"event": "cache_rebuild", "path": str(path), "reason": why})
            self._build(path, source_sha256, recipe, build)
        return path

    def _build(self, path: Path, source_sha256: str, recipe: str, build: Callable[[Path], None]) -> None:
        """Build into a temporary file, hash it, rename it into place, then write its record."""
        fd, tmp_name = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            build(tmp)
            digest, size = sha256_file(tmp), tmp.stat().st_size
            self.record_path(path).unlink(missing_ok=True)  # never a record that vouches for the old file
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        rec = {"format": FORMAT, "source_sha256": source_sha256, "recipe": recipe, "sha256": digest, "bytes": size,
               "built_unix": round(time.time(), 3)}
        rec_tmp = self.record_path(path).with_suffix(".tmp")
        rec_tmp.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(rec_tmp, self.record_path(path))

"""The adapter folders of a run: ``<adapter_root>/<run_id>/v000001`` (served; immutable) and, next to them,
``<adapter_root>/<run_id>/.state/v000001`` (optimizer, schedule and service state, to resume training).

Each folder is written under a temporary name, flushed to disk, then renamed into place, so a reader never sees a
half-written version. A version folder exists before its AdapterVersion record is committed to Kafka; after a crash
the folders of versions that were never committed are removed (:meth:`RunFolders.remove_unpublished`) and the
version is trained and written again.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from vllm_train.lora import fsync_tree

_VERSION_DIR = re.compile(r"^v(\d{6,})$")


class RunFolders:
    def __init__(self, adapter_root: str | os.PathLike, run_id: str):
        self.adapter_root = Path(adapter_root)
        self.run_id = run_id
        self.run_dir = self.adapter_root / run_id
        self.state_root = self.run_dir / ".state"

    def version_dir(self, number: int) -> Path:
        return self.run_dir / f"v{number:06d}"

    def state_dir(self, number: int) -> Path:
        return self.state_root / f"v{number:06d}"

    def relative_uri(self, number: int) -> str:
        """The URI published in AdapterVersion: a path relative to the shared adapter root, which engines resolve
        against their own mount of it."""
        return f"{self.run_id}/v{number:06d}"

    def write(self, target: Path, fill) -> Path:
        """Creates ``target`` atomically: ``fill(tmp_dir)`` writes into a temporary sibling, which is flushed and
        renamed. Refuses to replace an existing folder (versions are immutable)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise FileExistsError(f"{target} exists; a version folder is never rewritten")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            fill(tmp)
            fsync_tree(tmp)
            os.rename(tmp, target)
            _fsync_dir(target.parent)  # the rename itself survives a power cut
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def remove_unpublished(self, last_published: int) -> list[Path]:
        """Deletes version and state folders numbered above ``last_published`` and leftover temporary folders;
        returns what it removed."""
        removed = []
        for parent in (self.run_dir, self.state_root):
            if not parent.is_dir():
                continue
            for entry in parent.iterdir():
                match = _VERSION_DIR.match(entry.name)
                if entry.name.startswith(".tmp-") or (match and int(match[1]) > last_published):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return sorted(removed)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

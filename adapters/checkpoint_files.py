"""Checkpoints of the online trader in a local folder, for runs without Cassandra (demos, paper runs).

Each file is written to a temporary name, fsynced and renamed (atomic on POSIX); ``checkpoint.json`` is
the commit (see :mod:`models.checkpoint` for what a checkpoint holds).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from models.checkpoint import Checkpoint, InFlight


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class FileCheckpointStore:
    """Checkpoints in ``<directory>/<trader id>/``: ``state.pt`` + ``checkpoint.json`` (the commit)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def _folder(self, trader_id: str) -> Path:
        folder = self.directory / trader_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def load_checkpoint(self, trader_id: str) -> Checkpoint | None:
        folder = self._folder(trader_id)
        pointer = folder / "checkpoint.json"
        if not pointer.exists():
            return None
        meta = json.loads(pointer.read_text())
        blob = (folder / meta["file"]).read_bytes()
        checkpoint = Checkpoint(int(meta["batch_id"]), str(meta["model_version"]), int(meta["online_updates"]), blob)
        if checkpoint.digest != meta["digest"]:
            raise ValueError(f"checkpoint of trader {trader_id} is corrupt: digest mismatch")
        return checkpoint

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        folder = self._folder(trader_id)
        name = f"state-{checkpoint.batch_id}.pt"
        _atomic_write(folder / name, checkpoint.blob)
        meta = {"batch_id": checkpoint.batch_id, "model_version": checkpoint.model_version,
                "online_updates": checkpoint.online_updates, "digest": checkpoint.digest, "file": name}  # fmt: skip
        _atomic_write(folder / "checkpoint.json", json.dumps(meta).encode())
        for old in folder.glob("state-*.pt"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def in_flight(self, trader_id: str) -> InFlight | None:
        path = self._folder(trader_id) / "in_flight.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return InFlight(int(data["batch_id"]), str(data["model_version"]))

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None:
        path = self._folder(trader_id) / "in_flight.json"
        _atomic_write(path, json.dumps({"batch_id": batch_id, "model_version": model_version}).encode())

"""The online trader's checkpoint: its whole state as one blob, committed with the batch id it covers.

The state (both networks, optimiser, compact replay, epsilon, generators, account, kline history
tail, model version) is a dict of tensors and plain values, serialised with ``torch.save`` and read
back with ``weights_only=True`` (no pickled code). :class:`CheckpointStore` is where it goes:

- :class:`streaming.cassandra_sink.CassandraSink` (production): the blob in chunks beside a pointer
  row that is the commit (see that module);
- :class:`FileCheckpointStore`: a local folder, each file written to a temporary name and renamed
  (atomic on POSIX), for runs without Cassandra.

Besides the last checkpoint a store remembers the batch *in flight* (id and model version, written
before the batch is processed), so that a batch replayed after a crash is processed with the model
version it was first processed with, even if the champion alias moved meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    batch_id: int
    model_version: str
    online_updates: int
    blob: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()


@dataclass(frozen=True)
class InFlight:
    batch_id: int
    model_version: str


class CheckpointStore(Protocol):
    def load_checkpoint(self, trader_id: str) -> Checkpoint | None: ...

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None: ...

    def in_flight(self, trader_id: str) -> InFlight | None: ...

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None: ...


def encode_state(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return buffer.getvalue()


def decode_state(blob: bytes) -> dict[str, Any]:
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    found = state.get("format") if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"trader checkpoint format {found!r} is not {CHECKPOINT_FORMAT}")
    return state


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

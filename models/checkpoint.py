"""The online trader's checkpoint: its whole state as one blob, committed with the batch id it covers.

The state (both networks, optimiser, compact replay, epsilon, generators, account, kline history
tail, model version) is a dict of tensors and plain values, serialised with ``torch.save`` and read
back with ``weights_only=True`` (no pickled code). A :class:`~models.ports.CheckpointStore` is where
it goes:

- ``adapters.cassandra.checkpoints.CassandraCheckpointStore`` (production): the blob in chunks beside a
  pointer row that is the commit (see that module);
- ``adapters.checkpoint_files.FileCheckpointStore``: a local folder, each file written to a temporary
  name and renamed (atomic on POSIX), for runs without Cassandra.

Besides the last checkpoint a store remembers the batch *in flight* (id and model version, written
before the batch is processed), so that a batch replayed after a crash is processed with the model
version it was first processed with, even if the champion alias moved meanwhile.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

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

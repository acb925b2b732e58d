"""The online trader's :class:`~models.ports.CheckpointStore` on Cassandra: chunked blob + pointer row.

Tables ``agent_checkpoints`` (one pointer row per trader: the last committed batch id, the one before,
model version, digest, size, chunk count, and the batch in flight) and ``agent_checkpoint_chunks`` (the
blob in chunks of 512 KiB: a blob cell of several MB is an anti-pattern and nears the mutation size
limit).

Why the checkpoint lives in Cassandra (chunked) rather than in a local file: Cassandra is already the
durable store the trader must reach to commit its rows, so one store holds both, a restarted driver
on another machine (or container) finds its state, and there is no second durability story to
operate. The blob stays small (about 1–3 MB: the replay stores hour indices, not windows; see
streaming/online_learner.py). Commit protocol: the chunks of batch ``n`` are written first under
their own partition, then the single pointer row is updated (atomic per row), then the partition of
the checkpoint before the previous one is deleted; a crash at any point leaves the pointer on a
complete checkpoint, and the digest is checked on load.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cassandra.query import PreparedStatement

from adapters.cassandra.session import CassandraSession
from models.checkpoint import Checkpoint, InFlight

CHUNK_BYTES = 512 * 1024


class CassandraCheckpointStore:
    """Checkpoints and in-flight batches of the traders, in ``agent_checkpoints`` and its chunks."""

    def __init__(self, db: CassandraSession, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.db, self.chunk_bytes = db, chunk_bytes
        self._pointers: dict[str, tuple[int | None, int | None]] = {}
        ks = db.keyspace
        queries = {
            "chunk": f"INSERT INTO {ks}.agent_checkpoint_chunks (trader_id, batch_id, chunk, data) VALUES (?, ?, ?, ?)",
            "pointer": f"UPDATE {ks}.agent_checkpoints SET batch_id = ?, previous_batch_id = ?, model_version = ?, "
            "online_updates = ?, digest = ?, size_bytes = ?, chunks = ? WHERE trader_id = ?",
            "in_flight": f"UPDATE {ks}.agent_checkpoints SET in_flight_batch_id = ?, in_flight_model_version = ? "
            "WHERE trader_id = ?",
            "read_pointer": f"SELECT batch_id, previous_batch_id, model_version, online_updates, digest, chunks, "
            f"in_flight_batch_id, in_flight_model_version FROM {ks}.agent_checkpoints WHERE trader_id = ?",
            "read_chunks": f"SELECT chunk, data FROM {ks}.agent_checkpoint_chunks WHERE trader_id = ? AND batch_id = ?",
            "drop_chunks": f"DELETE FROM {ks}.agent_checkpoint_chunks WHERE trader_id = ? AND batch_id = ?",
        }
        self._statements: dict[str, PreparedStatement] = {name: db.prepare(query) for name, query in queries.items()}

    def _run(self, name: str, params: tuple[Any, ...]) -> Any:
        return self.db.run(self._statements[name], params)

    def _pointer_ids(self, trader_id: str) -> tuple[int | None, int | None]:
        if trader_id not in self._pointers:
            row = self._run("read_pointer", (trader_id,)).one()
            self._pointers[trader_id] = (None, None) if row is None else (row.batch_id, row.previous_batch_id)
        return self._pointers[trader_id]

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        """Chunks first, then the pointer row (the commit), then drop what is older than the last two."""
        current, previous = self._pointer_ids(trader_id)
        blob, size = checkpoint.blob, self.chunk_bytes
        chunks = [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]
        chunk = self._statements["chunk"]
        self.db.run_all([(chunk, (trader_id, checkpoint.batch_id, n, data)) for n, data in enumerate(chunks)])
        keep = previous if current == checkpoint.batch_id else current
        self._run("pointer", (checkpoint.batch_id, keep, checkpoint.model_version, checkpoint.online_updates,
                              checkpoint.digest, len(blob), len(chunks), trader_id))  # fmt: skip
        for stale in {current, previous} - {checkpoint.batch_id, keep, None}:
            self._run("drop_chunks", (trader_id, stale))
        self._pointers[trader_id] = (checkpoint.batch_id, keep)

    def load_checkpoint(self, trader_id: str) -> Checkpoint | None:
        row = self._run("read_pointer", (trader_id,)).one()
        if row is None or row.batch_id is None:
            return None
        parts = sorted(self._run("read_chunks", (trader_id, row.batch_id)), key=lambda r: r.chunk)
        if len(parts) != row.chunks or [p.chunk for p in parts] != list(range(row.chunks)):
            raise ValueError(f"checkpoint {row.batch_id} of trader {trader_id} has {len(parts)}/{row.chunks} chunks")
        blob = b"".join(bytes(p.data or b"") for p in parts)
        if hashlib.sha256(blob).hexdigest() != row.digest:
            raise ValueError(f"checkpoint {row.batch_id} of trader {trader_id} is corrupt: digest mismatch")
        self._pointers[trader_id] = (row.batch_id, row.previous_batch_id)
        return Checkpoint(int(row.batch_id), str(row.model_version), int(row.online_updates or 0), blob)

    def in_flight(self, trader_id: str) -> InFlight | None:
        row = self._run("read_pointer", (trader_id,)).one()
        if row is None or row.in_flight_batch_id is None:
            return None
        return InFlight(int(row.in_flight_batch_id), str(row.in_flight_model_version))

    def mark_in_flight(self, trader_id: str, batch_id: int, model_version: str) -> None:
        self._run("in_flight", (batch_id, model_version, trader_id))

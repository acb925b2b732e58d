"""Per-micro-batch state of the Spark job's driver, versioned by batch id like Spark's own state store.

Batch ``n`` starts from the state left by the newest batch before ``n`` and leaves its own under ``n``.
When Spark replays batch ``n`` after a crash (its offsets were logged, its commit was not), the job
reads the state of ``n - 1`` again, so the replay computes exactly what the first attempt computed.
Files are written atomically (temporary file, fsync, rename) and only the last ``keep`` are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class BatchStateStore:
    """JSON snapshots ``<root>/<batch id>.json``."""

    def __init__(self, root: Path, keep: int = 20) -> None:
        self.root = root
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def batch_ids(self) -> list[int]:
        return sorted(int(p.stem) for p in self.root.glob("*.json") if p.stem.isdigit())

    def load_before(self, batch_id: int) -> dict[str, Any] | None:
        """The state left by the newest batch with an id below ``batch_id`` (None if there is none)."""
        earlier = [b for b in self.batch_ids() if b < batch_id]
        if not earlier:
            return None
        state: dict[str, Any] = json.loads((self.root / f"{earlier[-1]}.json").read_text())
        return state

    def save(self, batch_id: int, state: dict[str, Any]) -> None:
        target = self.root / f"{batch_id}.json"
        tmp = target.with_suffix(".tmp")
        with tmp.open("w") as handle:
            json.dump(state, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        for old in self.batch_ids()[: -self.keep]:
            (self.root / f"{old}.json").unlink(missing_ok=True)


class BatchFailures:
    """Failed attempts of micro-batches, by batch id, in one JSON file beside the states (survives a restart).

    A batch that raised is recorded here before the job stops; the next attempt of the same batch id (Spark
    replays it after the restart) reads how often it failed. Written atomically like the states."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        return data

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            json.dump(data, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def attempts(self, batch_id: int) -> int:
        """How many attempts of ``batch_id`` failed (0 when none did)."""
        return int(self._read().get(str(batch_id), {}).get("attempts", 0))

    def last_error(self, batch_id: int) -> str:
        return str(self._read().get(str(batch_id), {}).get("error", ""))

    def record(self, batch_id: int, error: BaseException) -> int:
        """Count one more failed attempt of ``batch_id``; returns the count."""
        data = self._read()
        entry = data.setdefault(str(batch_id), {"attempts": 0})
        entry["attempts"] = int(entry["attempts"]) + 1
        entry["error"] = f"{type(error).__name__}: {error}"[:500]
        self._write(data)
        return int(entry["attempts"])

    def failed_batches(self) -> dict[int, int]:
        """Batch ids with failed attempts not yet resolved, and their counts."""
        return {int(b): int(e["attempts"]) for b, e in self._read().items()}

    def clear(self, batch_id: int) -> None:
        data = self._read()
        if data.pop(str(batch_id), None) is not None:
            self._write(data)

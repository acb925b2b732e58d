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

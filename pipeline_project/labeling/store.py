"""The labels people gave on the labeling page, one JSON file per queue, rewritten atomically on every change.

A queue holds at most a few thousand labels (a few hundred kB), so a whole-file rewrite costs under a
millisecond and a reader never sees half a file. The store is private: it names the items and says when each
label was given; what leaves it is the `human_labels` release (see `labeling.release`).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from pipeline_project.files import write_text_atomic


class LabelStore:
    """One queue's labels: {item id: {"label", "guess", "confidence", "model_version", "labelled_at"}}."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def all(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())["labels"]

    def put(self, item_id: str, label: str, guess: str | None, confidence: float | None, model_version: str | None):
        """Give (or change) an item's label; the record as stored."""
        record = {
            "label": label,
            "guess": guess,
            "confidence": confidence,
            "model_version": model_version,
            "labelled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with self._lock:
            labels = self.all()
            labels[item_id] = record
            self._write(labels)
        return record

    def remove(self, item_id: str) -> bool:
        """Take an item's label back (undo); whether it had one."""
        with self._lock:
            labels = self.all()
            if labels.pop(item_id, None) is None:
                return False
            self._write(labels)
            return True

    def _write(self, labels: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({"labels": labels}, indent=0, sort_keys=True))

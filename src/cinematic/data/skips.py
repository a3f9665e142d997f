"""Files a training run could not use: skipped with a warning and listed in a report, or refused.

On a real corpus of 100,000 files a few are always broken (a truncated MIDI, a WAV that is not one).
A task's build hands each unreadable file to `SkippedFiles.skip`: by default the file is left out,
counted and listed in `<run_dir>/skipped_files.json`, and the run goes on; with `data.strict: true`
(`cinematic train --strict`) the first one stops the run with an error naming it, as before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cinematic.errors import UserError
from cinematic.utils import atomic_write_bytes

log = logging.getLogger(__name__)

REPORT_NAME = "skipped_files.json"


class UnreadableFile(UserError):
    """A data file that cannot be decoded; `reason` says why without the path (for skip reports)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}; remove it or fix it")
        self.path, self.reason = Path(path), reason


@dataclass
class SkippedFiles:
    """The files a build left out, with why (`strict`: refuse the first one instead)."""

    strict: bool = False
    entries: list[dict[str, str]] = field(default_factory=list)

    def skip(self, path: str | Path, reason: str) -> None:
        if self.strict:
            raise UserError(
                f"{path}: {reason}\n(data.strict is on: remove or fix the file, or train without --strict "
                f"to skip unreadable files and list them in {REPORT_NAME})"
            )
        log.warning("skipping %s: %s", path, reason)
        self.entries.append({"path": str(path), "reason": reason})

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, run_dir: str | Path) -> Path | None:
        """`<run_dir>/skipped_files.json` when anything was skipped (None otherwise)."""
        if not self.entries:
            return None
        path = Path(run_dir) / REPORT_NAME
        report = {"count": len(self.entries), "files": self.entries}
        atomic_write_bytes(path, json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
        log.warning("%d unreadable file(s) skipped; the list is in %s", len(self.entries), path)
        return path

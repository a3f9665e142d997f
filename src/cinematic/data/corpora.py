"""Music corpora in their published layouts, detected from the folder: `discover_music_corpus(dir)`.

| layout | detected by | labels | split |
| --- | --- | --- | --- |
| MAESTRO v3 (v1/v2 too) | `maestro-v*.csv` or `maestro-v*.json` in the folder | `composer` (`canonical_composer`), `title`, `year` | the file's `split` column (train / validation / test) |
| EMOPIA | `label.csv` with a `4Q` column, or MIDI files named `Q1_…`–`Q4_…` | `emotion` (the quadrant mapped to the project's names, `EMOPIA_EMOTIONS`) and `quadrant` | `split/{train,val,test}_clip.csv` (`clip_name`) when present |
| Lakh MIDI | a folder named `lmd_full`, `lmd_matched` or `lmd_aligned` (the folder or one inside it), or `<0-f>/<md5>.mid` | none (trains on the measured attributes alone) | none |
| seed | anything else: `*.mid|*.midi|*.wav|…` with optional same-stem `.json` labels | the `.json` | none |

A same-stem `.json` beside a file adds labels in every layout and wins over the layout's own. A corpus
without a split leaves the train/validation split to the task (`split_positions`, stratified by
emotion); with one, training reads its `train` items, validation its `validation` items (at most
`data.max_val_items`, a seeded draw), and `test` items are never trained on (`cinematic evaluate music`
measures on them).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cinematic.data.audio import AUDIO_SUFFIXES
from cinematic.data.dataset import MIDI_SUFFIXES, MusicItem, read_json_labels, read_music_dir
from cinematic.errors import UserError

log = logging.getLogger(__name__)

Layout = Literal["seed", "emopia", "maestro", "lakh"]
SPLITS = ("train", "validation", "test")

EMOPIA_EMOTIONS = {"Q1": "triumphant", "Q2": "tense", "Q3": "sad", "Q4": "peaceful"}
"""EMOPIA's Russell quadrants → the emotion names of the demo data and the docs:
Q1 high valence, high arousal (happy, excited) → triumphant; Q2 low valence, high arousal (tense,
angry) → tense; Q3 low valence, low arousal (sad) → sad; Q4 high valence, low arousal (calm, relaxed)
→ peaceful. The quadrant itself is kept as the `quadrant` label."""

LAKH_FOLDERS = ("lmd_full", "lmd_matched", "lmd_aligned")
_EMOPIA_NAME = re.compile(r"^Q([1-4])_", re.IGNORECASE)
_MD5_NAME = re.compile(r"^[0-9a-f]{32}$")
_SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "test": "test",
}


@dataclass
class CorpusItem(MusicItem):
    """A music file with its labels and, when the corpus defines one, its split."""

    split: str | None = None


@dataclass
class Corpus:
    """The files of a music folder, the layout they were read as, and the items' splits."""

    root: Path
    layout: Layout
    items: list[CorpusItem] = field(default_factory=list)

    @property
    def has_split(self) -> bool:
        return any(item.split is not None for item in self.items)

    def of_kind(self, kind: Literal["midi", "audio"]) -> list[CorpusItem]:
        return [item for item in self.items if item.kind == kind]

    def describe(self) -> str:
        counts = {s: sum(item.split == s for item in self.items) for s in SPLITS}
        split = ", ".join(f"{n} {s}" for s, n in counts.items() if n) if self.has_split else "no split"
        return f"{self.root}: {self.layout} layout, {len(self.items)} file(s) ({split})"


# ------------------------------------------------------------------------------------- detection


def detect_music_layout(root: str | Path) -> Layout:
    """Which layout `root` holds (see the module docstring); the folder must exist."""
    root = Path(root)
    if _maestro_metadata(root) is not None:
        return "maestro"
    if _emopia_label_file(root) is not None or any(
        _EMOPIA_NAME.match(p.name) for p in _midi_files(root, recursive=False)
    ):
        return "emopia"
    if _emopia_midis_folder(root) is not None:
        return "emopia"
    if _lakh_root(root) is not None:
        return "lakh"
    return "seed"


def discover_music_corpus(data_dir: str | Path) -> Corpus:
    """The music files of `data_dir` in whichever supported layout it holds, sorted by path, with labels
    and splits. A missing folder, a metadata file that cannot be read, or a layout whose files are all
    missing is a UserError naming the file."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"music folder not found: {root}. Pass the folder that holds your music data.")
    layout = detect_music_layout(root)
    reader = {"maestro": _read_maestro, "emopia": _read_emopia, "lakh": _read_lakh, "seed": _read_seed}
    items = sorted(reader[layout](root), key=lambda item: str(item.path))
    corpus = Corpus(root=root, layout=layout, items=items)
    if layout != "seed":
        log.info("%s", corpus.describe())
    return corpus


def split_positions(
    items: Sequence[CorpusItem],
    groups: Sequence[Hashable],
    val_fraction: float,
    seed: int,
    max_val: int | None = None,
) -> tuple[list[int], list[int]]:
    """(training positions, validation positions) into `items`.

    With a corpus split: its `train` items train and its `validation` items validate (a seeded draw of
    `max_val` of them when there are more); `test` items and items without a split are left out. When
    the corpus has training items but no validation items, the training items are split as below.
    Without a split: `stratified_split(groups, …)` (each group's share kept in validation)."""
    from cinematic.data.balance import stratified_split

    if any(item.split is not None for item in items):
        train = [i for i, item in enumerate(items) if item.split == "train"]
        val = [i for i, item in enumerate(items) if item.split == "validation"]
        if train and val:
            if max_val is not None and len(val) > max_val:
                picked = np.random.default_rng(seed).permutation(len(val))[:max_val]
                val = sorted(val[int(i)] for i in picked)
            return train, val
        if train:
            log.info("the corpus split has no validation items: splitting its training items")
            sub_train, sub_val = stratified_split([groups[i] for i in train], val_fraction, seed, max_val)
            return [train[i] for i in sub_train], [train[i] for i in sub_val]
        log.warning("the corpus split has no training items: ignoring it")
    return stratified_split(groups, val_fraction, seed, max_val)


# ------------------------------------------------------------------------------------- helpers


def _midi_files(root: Path, recursive: bool = True) -> list[Path]:
    pattern = root.rglob("*") if recursive else root.glob("*")
    return sorted(
        p for p in pattern if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES and not p.name.startswith(".")
    )


def _kind(path: Path) -> Literal["midi", "audio"] | None:
    suffix = path.suffix.lower()
    return "midi" if suffix in MIDI_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else None


def _with_sidecar(path: Path, labels: dict[str, Any]) -> dict[str, Any]:
    """The layout's labels, overridden by a same-stem `.json` when there is one."""
    return {**labels, **read_json_labels(path.with_suffix(".json"))}


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as err:
        raise UserError(f"{path}: cannot read it as UTF-8 CSV text ({err})") from None
    return [
        {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        for row in csv.DictReader(text.splitlines())
    ]


def _require_columns(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    first = next(iter(rows), None)
    missing = [c for c in columns if first is None or c not in first]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)}; expected at least {', '.join(columns)}"
            + ("" if first else " (the file has no rows)")
        )


# --------------------------------------------------------------------------------------- seed


def _read_seed(root: Path) -> list[CorpusItem]:
    return [CorpusItem(path=i.path, kind=i.kind, labels=i.labels) for i in read_music_dir(root)]


# ------------------------------------------------------------------------------------ MAESTRO


def _maestro_metadata(root: Path) -> Path | None:
    """`maestro-v*.csv` (preferred) or `maestro-v*.json` in `root`, the newest version first."""
    for suffix in (".csv", ".json"):
        found = sorted(root.glob(f"maestro-v*{suffix}"), reverse=True)
        if found:
            return found[0]
    return None


def _maestro_rows(path: Path) -> list[dict[str, Any]]:
    """The metadata rows of a MAESTRO CSV or JSON (v3: columns of {row index: value}; v1/v2: a list of
    records)."""
    if path.suffix == ".csv":
        return _read_csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise UserError(f"{path}: not readable MAESTRO JSON metadata ({err})") from None
    if isinstance(data, list):
        return [row for row in data if isinstance(row, dict)]
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        index = sorted({k for column in data.values() for k in column}, key=lambda k: (len(k), k))
        return [{name: column.get(i) for name, column in data.items()} for i in index]
    raise UserError(f"{path}: expected MAESTRO metadata (a list of records or columns of values)")


def _read_maestro(root: Path) -> list[CorpusItem]:
    path = _maestro_metadata(root)
    assert path is not None
    rows = _maestro_rows(path)
    _require_columns(path, rows, ("midi_filename", "split", "canonical_composer"))
    items, missing = [], 0
    for number, row in enumerate(rows, start=2):
        split = _SPLIT_NAMES.get(str(row.get("split") or "").strip().lower())
        if split is None:
            log.warning("%s row %d: unknown split %r, file left out", path, number, row.get("split"))
            continue
        labels = {
            key: str(row[column]).strip()
            for key, column in (
                ("composer", "canonical_composer"),
                ("title", "canonical_title"),
                ("year", "year"),
            )
            if row.get(column) not in (None, "")
        }
        for column in ("midi_filename", "audio_filename"):
            if not row.get(column):
                continue
            file = root / str(row[column])
            kind = _kind(file)
            if kind is None:
                continue
            if not file.is_file():
                missing += column == "midi_filename"
                continue
            items.append(CorpusItem(path=file, kind=kind, labels=_with_sidecar(file, labels), split=split))
    if missing:
        log.warning("%s: %d MIDI file(s) it lists are not in %s", path, missing, root)
    if not items:
        raise UserError(
            f"{path}: none of the files it lists are under {root}; unpack the MAESTRO MIDI (and audio) "
            "archive into that folder, beside the metadata file"
        )
    return items


# ------------------------------------------------------------------------------------- EMOPIA


def _emopia_label_file(root: Path) -> Path | None:
    """`label.csv` with a `4Q` column, in `root` or (when `root` is EMOPIA's `midis/`) beside it."""
    for folder in (root, root.parent) if root.name == "midis" else (root,):
        path = folder / "label.csv"
        if path.is_file():
            try:
                header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
            except OSError:
                continue
            if header and "4Q" in [h.strip() for h in header[0].split(",")]:
                return path
    return None


def _emopia_midis_folder(root: Path) -> Path | None:
    midis = root / "midis"
    if midis.is_dir() and any(_EMOPIA_NAME.match(p.name) for p in _midi_files(midis, recursive=False)):
        return midis
    return None


def _emopia_splits(base: Path) -> dict[str, str]:
    """{clip stem: split} from `split/{train,val,test}_clip.csv` (column `clip_name`); {} when absent."""
    out: dict[str, str] = {}
    for name, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        path = base / "split" / f"{name}_clip.csv"
        if not path.is_file():
            continue
        rows = _read_csv(path)
        _require_columns(path, rows, ("clip_name",))
        for row in rows:
            if row["clip_name"]:
                out[Path(row["clip_name"]).stem] = split
    return out


def _read_emopia(root: Path) -> list[CorpusItem]:
    label_file = _emopia_label_file(root)
    quadrants: dict[str, str] = {}
    if label_file is not None:
        rows = _read_csv(label_file)
        _require_columns(label_file, rows, ("ID", "4Q"))
        for number, row in enumerate(rows, start=2):
            q = row["4Q"].upper().removeprefix("Q")
            if q not in ("1", "2", "3", "4"):
                log.warning(
                    "%s row %d: 4Q is %r, not 1-4; the clip keeps no emotion", label_file, number, row["4Q"]
                )
                continue
            quadrants[Path(row["ID"]).stem] = f"Q{q}"
    base = label_file.parent if label_file is not None else root.parent if root.name == "midis" else root
    splits = _emopia_splits(base)
    items = []
    for path in sorted(
        p for p in root.rglob("*") if p.is_file() and _kind(p) is not None and not p.name.startswith(".")
    ):
        match = _EMOPIA_NAME.match(path.name)
        quadrant = quadrants.get(path.stem) or (f"Q{match.group(1)}" if match else None)
        labels = {"emotion": EMOPIA_EMOTIONS[quadrant], "quadrant": quadrant} if quadrant else {}
        items.append(
            CorpusItem(
                path=path,
                kind=_kind(path) or "midi",
                labels=_with_sidecar(path, labels),
                split=splits.get(path.stem) if splits else None,
            )
        )
    if splits and any(item.split is None for item in items):
        log.warning(
            "%s: %d file(s) are in no split file (split/*_clip.csv) and are left out of training",
            root,
            sum(item.split is None for item in items),
        )
    return items


# --------------------------------------------------------------------------------------- Lakh


def _lakh_root(root: Path) -> Path | None:
    """The Lakh folder: `root` itself or a child named lmd_full/lmd_matched/lmd_aligned, or a folder of
    single-hex-digit subfolders holding `<md5>.mid` files."""
    if root.name in LAKH_FOLDERS:
        return root
    for name in LAKH_FOLDERS:
        if (root / name).is_dir():
            return root / name
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(re.fullmatch(r"[0-9a-f]", p.name) for p in subdirs):
        sample = next((f for d in subdirs for f in _midi_files(d, recursive=False)), None)
        if sample is not None and _MD5_NAME.match(sample.stem):
            return root
    return None


def _read_lakh(root: Path) -> list[CorpusItem]:
    """Every `<md5>.mid` once (lmd_matched lists a file under each track it matches): no labels, no
    split; the measured attributes are the conditions."""
    lakh = _lakh_root(root)
    assert lakh is not None
    items, seen = [], set()
    for path in _midi_files(root if lakh == root else lakh):
        key = path.stem.lower() if _MD5_NAME.match(path.stem.lower()) else str(path)
        if key in seen:
            continue
        seen.add(key)
        items.append(CorpusItem(path=path, kind="midi", labels=_with_sidecar(path, {})))
    return items

"""`cinematic data clean DIR [--out CLEAN_DIR] [--report PATH]`: audit every file of a data folder and
write a cleaned copy in the same layout plus a report. Originals are only read, never modified.

The folder may be a data root holding `music/`, `voice/` and/or `lyrics/`, or one of those folders
itself (recognised from its content). Every file gets one entry in `cleaning_report.json`:

    {"path": "voice/amy/u1.wav", "status": "ok" | "fixed" | "rejected", "reasons": ["sample_rate"], ...}

`path` is relative to DIR. Reason codes (rejected ones are left out of the cleaned copy, fixed ones
are repaired in it):

| code | status | meaning |
| --- | --- | --- |
| `corrupt` | rejected | cannot be decoded (bad header, truncated, not audio, unparsable MIDI) |
| `empty` | rejected | zero bytes, zero samples, a MIDI file without notes, an empty lyrics file |
| `nan` | rejected | NaN or infinite samples |
| `too_short` / `too_long` | rejected | outside `data.cleaning` durations |
| `silent` | rejected | peak below `data.cleaning.silence_dbfs` |
| `clipped` | rejected | more than `clip_fraction` of the samples at full scale |
| `duplicate` | rejected | same decoded PCM as another file (`duplicate_of` names the one kept) |
| `near_duplicate` | rejected | same audio up to gain/noise/encoding (fingerprint match) |
| `transcript_missing` / `transcript_empty` | rejected | voice: no usable transcript |
| `bad_metadata` | rejected | a JSON sidecar that is not a valid UTF-8 JSON object (the item keeps no labels) |
| `dc_offset` | fixed | mean removed |
| `sample_rate` | fixed | resampled to the target rate |
| `channels` | fixed | mixed to mono (voice) or to `music_max_channels` |
| `loudness` | fixed | normalized to the target LUFS (peak-limited) |
| `transcript_encoding` / `encoding` | fixed | text not UTF-8: decoded as Windows-1252/Latin-1, written as UTF-8 |

In a group of duplicates the file with no other problem is kept, else the first by sorted path. The
command exits 0 whenever it could audit the folder, however many files it rejected.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cinematic.configs.training_config import CleaningConfig
from cinematic.data.audio import AUDIO_SUFFIXES
from cinematic.data.dataset import MIDI_SUFFIXES, detect_voice_layout
from cinematic.errors import UserError
from cinematic.utils import atomic_write_bytes

log = logging.getLogger(__name__)

Kind = Literal["music", "voice", "lyrics"]
FIXABLE = {"dc_offset", "sample_rate", "channels", "loudness", "transcript_encoding", "encoding"}


@dataclass
class Target:
    """What the cleaned copy of one kind of data must look like."""

    sample_rate: int
    max_channels: int
    target_lufs: float
    max_duration: float


@dataclass
class Entry:
    """One file's audit result (serialized into the report without the private fields)."""

    path: str
    kind: Kind
    reasons: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    pcm_hash: str | None = None
    fingerprint: np.ndarray | None = None
    text: str | None = None  # fixed transcript / lyrics text to write

    @property
    def status(self) -> str:
        if any(r not in FIXABLE for r in self.reasons):
            return "rejected"
        return "fixed" if self.reasons else "ok"

    def report(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "reasons": list(self.reasons), **self.info}


# ---------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------


def detect_kinds(root: Path) -> dict[Kind, Path]:
    """{"music": dir, ...}: the data kinds under `root` (a data root or a single kind's folder)."""
    found: dict[Kind, Path] = {k: root / k for k in ("music", "voice", "lyrics") if (root / k).is_dir()}
    if found:
        return found
    if detect_voice_layout(root) != "seed":
        return {"voice": root}
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    files = [p for p in root.rglob("*") if p.is_file()]
    audio_top = [
        p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES + MIDI_SUFFIXES
    ]
    if audio_top or not subdirs:
        return {"music": root}
    has_audio = any(p.suffix.lower() in AUDIO_SUFFIXES for p in files)
    return {"voice": root} if has_audio else {"lyrics": root}


# ---------------------------------------------------------------------------------------------------
# Audio audit
# ---------------------------------------------------------------------------------------------------


def fingerprint(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Haitsma–Kalker (2002) style bits: signs of time differences of band-energy differences over 33
    log-spaced bands (300–3000 Hz) of the 8-kHz mono signal. (frames − 1, 32) booleans."""
    from cinematic.data.audio import resample

    mono = audio if audio.ndim == 1 else audio.mean(axis=0)
    x = resample(mono, sample_rate, 8000)
    n_fft, hop = 1024, 256
    if len(x) < n_fft + hop:
        return np.zeros((0, 32), dtype=bool)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    edges = np.geomspace(300, 3000, 34) * n_fft / 8000
    cumulative = np.cumsum(power, axis=-1)
    bands = np.diff(cumulative[:, np.round(edges).astype(int)], axis=-1) + 1e-10  # (frames, 33)
    energy = np.log(bands)
    diff = energy[:, :-1] - energy[:, 1:]
    return (diff[1:] - diff[:-1]) > 0


def _bit_error_rate(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return 1.0 if n == 0 else float(np.mean(a[:n] != b[:n]))


def _read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32, rate; raises on anything unreadable (caller records `corrupt`)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sr)


def audit_audio(path: Path, rel: str, kind: Kind, target: Target, cfg: CleaningConfig) -> Entry:
    """Decode and measure one audio file."""
    from cinematic.data.audio import integrated_loudness

    entry = Entry(path=rel, kind=kind)
    if path.stat().st_size == 0:
        entry.reasons.append("empty")
        return entry
    try:
        audio, sr = _read_audio(path)
    except Exception as exc:
        entry.reasons.append("corrupt")
        entry.info["error"] = str(exc)
        return entry
    channels, samples = audio.shape
    entry.info.update(sample_rate=sr, channels=channels, duration=round(samples / sr, 4))
    if samples == 0:
        entry.reasons.append("empty")
        return entry
    if not np.all(np.isfinite(audio)):
        entry.reasons.append("nan")
        return entry
    entry.pcm_hash = hashlib.sha1(audio.tobytes() + f"{sr}:{channels}".encode()).hexdigest()
    duration = samples / sr
    if duration < cfg.min_duration:
        entry.reasons.append("too_short")
    elif duration > target.max_duration:
        entry.reasons.append("too_long")
    peak = float(np.abs(audio).max())
    entry.info["peak_dbfs"] = round(20 * math.log10(peak), 2) if peak > 0 else None
    silent = peak == 0 or 20 * math.log10(peak) < cfg.silence_dbfs
    if silent:
        entry.reasons.append("silent")
    elif float(np.mean(np.abs(audio) >= 0.999)) > cfg.clip_fraction:
        entry.reasons.append("clipped")
    dc = float(np.abs(audio.mean(axis=1)).max())
    if dc > cfg.dc_offset:
        entry.reasons.append("dc_offset")
        entry.info["dc_offset"] = round(dc, 4)
    if sr != target.sample_rate:
        entry.reasons.append("sample_rate")
    if channels > target.max_channels:
        entry.reasons.append("channels")
    if not silent:
        lufs = integrated_loudness(audio - audio.mean(axis=1, keepdims=True), sr)
        entry.info["loudness_lufs"] = round(lufs, 2) if math.isfinite(lufs) else None
        if math.isfinite(lufs) and abs(lufs - target.target_lufs) > cfg.loudness_tolerance:
            entry.reasons.append("loudness")
        entry.fingerprint = fingerprint(audio, sr)
    return entry


def fix_audio(source: Path, target: Target) -> tuple[np.ndarray, int]:
    """The cleaned version of an audio file: DC removed, mixed down, resampled, loudness normalized."""
    from cinematic.data.audio import integrated_loudness, resample
    from cinematic.data.augmentation import limit

    audio, sr = _read_audio(source)
    audio = audio - audio.mean(axis=1, keepdims=True)
    if audio.shape[0] > target.max_channels:
        audio = (
            audio.mean(axis=0, keepdims=True)
            if target.max_channels == 1
            else _downmix(audio, target.max_channels)
        )
    audio = resample(audio, sr, target.sample_rate)
    lufs = integrated_loudness(audio, target.sample_rate)
    if math.isfinite(lufs):
        audio = audio * np.float32(10 ** ((target.target_lufs - lufs) / 20))
    audio = limit(audio, target.sample_rate, ceiling=0.98)
    return (audio[0] if audio.shape[0] == 1 else audio), target.sample_rate


def _downmix(audio: np.ndarray, channels: int) -> np.ndarray:
    """Fold extra channels evenly into the first `channels` (e.g. 5.1 → stereo)."""
    out = audio[:channels].copy()
    for extra in range(channels, audio.shape[0]):
        out += audio[extra] / channels * 0.7071
    return out / np.float32(1 + 0.7071 * (audio.shape[0] - channels) / channels)


# ---------------------------------------------------------------------------------------------------
# Text and metadata audit
# ---------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, reason): UTF-8 text, or text decoded as cp1252/latin-1 with reason `encoding`."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        for codec in ("cp1252", "latin-1"):
            try:
                return raw.decode(codec), "encoding"
            except UnicodeDecodeError:
                continue
    return None, "encoding"  # pragma: no cover (latin-1 decodes any bytes)


def audit_json(path: Path, rel: str, kind: Kind) -> Entry:
    entry = Entry(path=rel, kind=kind)
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    except (ValueError, UnicodeDecodeError) as exc:
        entry.reasons.append("bad_metadata")
        entry.info["error"] = str(exc)
    return entry


def attach_transcript(entry: Entry, transcript: Path | None) -> None:
    """Voice: check the utterance's transcript and record problems on the audio entry."""
    if transcript is None or not transcript.is_file():
        entry.reasons.append("transcript_missing")
        return
    text, problem = _read_text(transcript)
    if text is None or not text.strip():
        entry.reasons.append("transcript_empty")
        return
    if problem:
        entry.reasons.append("transcript_encoding")
    entry.text = text.strip() + "\n"


# ---------------------------------------------------------------------------------------------------
# Duplicates
# ---------------------------------------------------------------------------------------------------


def mark_duplicates(entries: list[Entry], cfg: CleaningConfig) -> None:
    """Exact duplicates by decoded-PCM hash, then near duplicates by fingerprint, within each kind."""

    # entries are sorted by path, so "first" below means first by sorted path
    def keeper(group: list[Entry]) -> Entry:
        clean = [e for e in group if not e.reasons]
        return clean[0] if clean else group[0]

    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        if entry.pcm_hash:
            groups.setdefault((entry.kind, entry.pcm_hash), []).append(entry)
    for group in groups.values():
        if len(group) > 1:
            kept = keeper(group)
            for entry in group:
                if entry is not kept:
                    entry.reasons.append("duplicate")
                    entry.info["duplicate_of"] = kept.path

    candidates = [
        e
        for e in entries
        if e.fingerprint is not None and len(e.fingerprint) >= 8 and "duplicate" not in e.reasons
    ]
    candidates.sort(key=lambda e: e.info["duration"])
    linked: dict[int, list[Entry]] = {}
    for i, a in enumerate(candidates):
        for b in candidates[i + 1 :]:
            if b.info["duration"] > a.info["duration"] * 1.03:
                break
            if a.kind == b.kind and _bit_error_rate(a.fingerprint, b.fingerprint) < cfg.near_duplicate_ber:
                group = linked.get(id(a)) or linked.get(id(b)) or []
                for member in (a, b):
                    if member not in group:
                        group.append(member)
                    linked[id(member)] = group
    seen: set[int] = set()
    for group in linked.values():
        if id(group) in seen:
            continue
        seen.add(id(group))
        group.sort(key=lambda e: e.path)
        kept = keeper(group)
        for entry in group:
            if entry is not kept:
                entry.reasons.append("near_duplicate")
                entry.info["duplicate_of"] = kept.path


# ---------------------------------------------------------------------------------------------------
# The whole folder
# ---------------------------------------------------------------------------------------------------


def _targets(config: Any) -> dict[Kind, Target]:
    c = config.data.cleaning
    return {
        "voice": Target(config.voice_model.audio.sample_rate, 1, c.target_lufs_voice, c.max_duration_voice),
        "music": Target(
            config.data.sample_rate, c.music_max_channels, c.target_lufs_music, c.max_duration_music
        ),
    }


@functools.lru_cache(maxsize=8)
def _transcript_finder(kind_root: Path):
    """audio path → its transcript path, for the voice layout found under `kind_root`."""
    layout = detect_voice_layout(kind_root)
    if layout == "ljspeech":
        import csv

        rows = (kind_root / "metadata.csv").read_bytes().decode("utf-8", errors="replace").splitlines()
        ids = {r[0]: r for r in csv.reader(rows, delimiter="|", quoting=csv.QUOTE_NONE) if r}
        return lambda audio: ("ljspeech", ids.get(audio.stem))
    if layout == "vctk":

        def vctk(audio: Path):
            stem = audio.stem.removesuffix("_mic1").removesuffix("_mic2")
            return kind_root / "txt" / audio.parent.name / f"{stem}.txt"

        return vctk
    return lambda audio: audio.with_suffix(".txt")


def audit_folder(root: Path, config: Any, progress: bool | None = None) -> list[Entry]:
    """Audit every file under `root`; entries sorted by relative path."""
    from tqdm import tqdm

    kinds = detect_kinds(root)
    targets = _targets(config)
    jobs: list[tuple[Kind, Path]] = []
    for kind, kind_root in kinds.items():
        jobs.extend(
            (kind, p) for p in sorted(kind_root.rglob("*")) if p.is_file() and not p.name.startswith(".")
        )
    show = sys.stderr.isatty() if progress is None else progress
    entries: list[Entry] = []
    for kind, path in tqdm(jobs, desc="audit", unit="file", disable=not show):
        entry = _audit_one(root, kinds[kind], kind, path, targets, config.data.cleaning)
        if entry is not None:
            entries.append(entry)
    entries.sort(key=lambda e: e.path)
    mark_duplicates(entries, config.data.cleaning)
    return entries


def _audit_one(
    root: Path, kind_root: Path, kind: Kind, path: Path, targets: dict, cfg: CleaningConfig
) -> Entry | None:
    rel = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    if suffix == ".json":
        return audit_json(path, rel, kind)
    if kind == "lyrics":
        if suffix != ".txt":
            return None
        entry = Entry(path=rel, kind=kind)
        text, problem = _read_text(path)
        if text is None or not text.strip():
            entry.reasons.append("empty")
        else:
            entry.text = text.strip() + "\n"
            if problem:
                entry.reasons.append("encoding")
        return entry
    if suffix in MIDI_SUFFIXES and kind == "music":
        return _audit_midi(path, rel)
    if suffix in AUDIO_SUFFIXES:
        entry = audit_audio(path, rel, kind, targets[kind], cfg)
        if kind == "voice":
            finder = _transcript_finder(kind_root)
            found = finder(path)
            if isinstance(found, tuple):  # LJSpeech: the transcript is a metadata.csv row
                if found[1] is None:
                    entry.reasons.append("transcript_missing")
                elif not "".join(found[1][1:]).strip():
                    entry.reasons.append("transcript_empty")
            else:
                attach_transcript(entry, found)
        return entry
    return None  # transcripts, metadata.csv, speaker-info.txt, readme files: copied as they are


def _audit_midi(path: Path, rel: str) -> Entry:
    import symusic

    entry = Entry(path=rel, kind="music")
    if path.stat().st_size == 0:
        entry.reasons.append("empty")
        return entry
    try:
        score = symusic.Score(str(path), ttype="second")
    except Exception as exc:
        entry.reasons.append("corrupt")
        entry.info["error"] = str(exc)
        return entry
    notes = sum(len(t.notes) for t in score.tracks)
    entry.info.update(duration=round(float(score.end()), 3), notes=notes)
    if notes == 0:
        entry.reasons.append("empty")
    return entry


def write_clean_copy(
    root: Path, out: Path, entries: list[Entry], config: Any, progress: bool | None = None
) -> None:
    """Copy every file that is not rejected into `out` with the same layout, fixing the fixed ones.

    Fixed audio is re-encoded as WAV (16-bit) under the same stem when its format was lossy or cannot be
    written; transcripts of rejected utterances are left out with them."""
    from tqdm import tqdm

    from cinematic.data.audio import save_audio

    targets = _targets(config)
    by_path = {e.path: e for e in entries}
    rejected_audio_stems = {
        (root / e.path).with_suffix("")
        for e in entries
        if e.status == "rejected" and e.kind == "voice" and Path(e.path).suffix.lower() in AUDIO_SUFFIXES
    }
    kinds = detect_kinds(root)
    files = sorted(
        p for kr in kinds.values() for p in kr.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    show = sys.stderr.isatty() if progress is None else progress
    for path in tqdm(files, desc="clean copy", unit="file", disable=not show):
        rel = path.relative_to(root).as_posix()
        entry = by_path.get(rel)
        dest = out / rel
        if entry is None:  # a companion file (transcript, metadata.csv, ...)
            if path.suffix.lower() == ".txt" and path.with_suffix("") in rejected_audio_stems:
                continue
            if path.suffix.lower() == ".txt" and any(path.with_suffix(s).is_file() for s in AUDIO_SUFFIXES):
                continue  # a seed-layout transcript: written with its audio below
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            continue
        if entry.status == "rejected":
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "lyrics" and path.suffix.lower() == ".txt":
            atomic_write_bytes(dest, (entry.text or "").encode("utf-8"))
            continue
        if path.suffix.lower() in AUDIO_SUFFIXES:
            if entry.status == "fixed" and set(entry.reasons) - {"transcript_encoding"}:
                audio, sr = fix_audio(path, targets[entry.kind])
                if path.suffix.lower() not in (".wav", ".flac"):
                    dest = dest.with_suffix(".wav")
                save_audio(dest, audio, sr, subtype="PCM_16")
            else:
                shutil.copyfile(path, dest)
            if entry.text is not None:  # seed-layout transcript, re-encoded as UTF-8
                atomic_write_bytes(dest.with_suffix(".txt"), entry.text.encode("utf-8"))
            continue
        shutil.copyfile(path, dest)  # MIDI and valid JSON


def summary_table(entries: Iterable[Entry]) -> str:
    """A readable Markdown summary: counts per status and reason, then every file that is not ok."""
    entries = list(entries)
    status_counts = {s: sum(1 for e in entries if e.status == s) for s in ("ok", "fixed", "rejected")}
    reasons: dict[str, int] = {}
    for entry in entries:
        for reason in entry.reasons:
            reasons[reason] = reasons.get(reason, 0) + 1
    lines = [
        "# Cleaning report",
        "",
        f"{len(entries)} files: " + ", ".join(f"{n} {s}" for s, n in status_counts.items()),
        "",
        "| reason | files |",
        "| --- | ---: |",
    ]
    lines += [
        f"| {reason} | {count} |" for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    lines += ["", "| file | status | reasons |", "| --- | --- | --- |"]
    lines += [f"| {e.path} | {e.status} | {', '.join(e.reasons)} |" for e in entries if e.reasons]
    return "\n".join(lines) + "\n"


def clean_folder(
    data_dir: str | Path,
    out: str | Path | None = None,
    report: str | Path | None = None,
    config: Any = None,
    progress: bool | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Audit `data_dir`, write the cleaned copy to `out` (default `<data_dir>_clean`) and the report.

    Returns the JSON report path and its `files` list.
    """
    from cinematic.configs import load_config

    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    config = config if config is not None else load_config()
    out = Path(out) if out else root.with_name(root.name + "_clean")
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise UserError(
            f"--out {out} must not be inside the data folder {root}: originals are never modified"
        )
    entries = audit_folder(root, config, progress)
    write_clean_copy(root, out, entries, config, progress)
    files = [e.report() for e in entries]
    report_path = Path(report) if report else out / "cleaning_report.json"
    document = {
        "data_dir": str(root),
        "clean_dir": str(out),
        "summary": {s: sum(1 for f in files if f["status"] == s) for s in ("ok", "fixed", "rejected")},
        "files": files,
    }
    atomic_write_bytes(report_path, json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8"))
    atomic_write_bytes(report_path.with_suffix(".md"), summary_table(entries).encode("utf-8"))
    return report_path, files


def clean_command(args: Any) -> int:
    """`cinematic data clean DIR [--out CLEAN_DIR] [--report PATH] [--config C --set k=v]`."""
    from cinematic.configs import load_config

    config = load_config(args.config, args.overrides)
    report_path, files = clean_folder(args.data_dir, args.out, args.report, config)
    entries = [Entry(path=f["path"], kind="music", reasons=f["reasons"]) for f in files]
    print(summary_table(entries), end="")
    print(f"report: {report_path} (and {report_path.with_suffix('.md')})")
    return 0

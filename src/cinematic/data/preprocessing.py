"""Feature extraction with a cache: `cinematic data preprocess {music,voice} DIR`, and the same step
inside training (`preprocess_voice`, `preprocess_music`, `FeatureCache`).

Features of one file are stored as a `.npz` under `<work_dir>/cache/features/<kind>/`, keyed by
sha1(content hash of the file, feature config, extractor version): editing a file or changing the mel
settings gives a new key, renaming or moving a file reuses the old one, and a second run only checks
hashes. Files are processed in worker processes with a progress bar; a file that fails is recorded
with its reason in the JSONL manifest (`<work_dir>/cache/<kind>_manifest.jsonl`) and the rest go on.

Voice features (per utterance, at `voice_model.audio`): `mel` (n_mels, T), `pitch` (T,) Hz with 0 for
unvoiced (Praat), `energy` (T,) (STFT-magnitude L2 norm), `audio` (samples,) float32 — T = len // hop,
so the three line up with the mel frames. Music audio (at `music_model.audio`): `mel`. MIDI files are
parsed (symusic) to validate them and record duration and note count; their tokens belong to the
music tokenizers.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.configs.model_config import MelConfig
from cinematic.errors import UserError
from cinematic.utils import atomic_write_bytes, file_sha1

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
"""Bump when an extractor changes its output, so old cache entries are not reused."""


def feature_key(content_hash: str, kind: str, mel: MelConfig | None, extra: dict | None = None) -> str:
    """Cache key of one file's features: content, feature settings and extractor version."""
    settings = {
        "kind": kind,
        "version": FEATURE_VERSION,
        "mel": mel.model_dump() if mel else None,
        **(extra or {}),
    }
    return hashlib.sha1((content_hash + json.dumps(settings, sort_keys=True)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Extractors (run in worker processes)
# ---------------------------------------------------------------------------------------------------


def _load_for_mel(path: Path, mel_cfg: MelConfig) -> np.ndarray:
    """Mono audio at the mel's rate, refused when too short for one frame or not finite."""
    from cinematic.data.audio import load_audio

    audio, sr = load_audio(path, mel_cfg.sample_rate, mono=True)
    if len(audio) < mel_cfg.n_fft:
        raise UserError(f"{path} is too short ({len(audio) / sr:.3f} s) for one mel frame")
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{path} contains NaN or infinite samples")
    return audio


def voice_features(path: Path, mel_cfg: MelConfig) -> dict[str, np.ndarray]:
    """mel, pitch, energy and the resampled mono audio of one utterance, frame-aligned."""
    from cinematic.data.audio import frame_energy, mel_spectrogram, pitch_praat

    audio = _load_for_mel(path, mel_cfg)
    sr = mel_cfg.sample_rate
    mel = mel_spectrogram(audio, mel_cfg).numpy()
    frames = mel.shape[-1]
    return {
        "mel": mel.astype(np.float32),
        "pitch": pitch_praat(audio, sr, mel_cfg.hop_length, n_frames=frames),
        "energy": frame_energy(audio, mel_cfg)[:frames],
        "audio": audio,
    }


def music_audio_features(path: Path, mel_cfg: MelConfig) -> dict[str, np.ndarray]:
    from cinematic.data.audio import mel_spectrogram

    audio = _load_for_mel(path, mel_cfg)
    return {"mel": mel_spectrogram(audio, mel_cfg).numpy().astype(np.float32)}


def midi_features(path: Path, mel_cfg: MelConfig | None = None) -> dict[str, np.ndarray]:
    """Validate a MIDI file; record its length in seconds and its note count."""
    import symusic

    try:
        score = symusic.Score(str(path), ttype="second")
    except Exception as exc:
        raise UserError(f"cannot parse MIDI file {path}: {exc}") from exc
    notes = sum(len(track.notes) for track in score.tracks)
    if notes == 0:
        raise UserError(f"MIDI file {path} has no notes")
    return {"duration": np.float32(score.end()), "notes": np.int64(notes)}


EXTRACTORS: dict[str, Callable[[Path, MelConfig], dict[str, np.ndarray]]] = {
    "voice": voice_features,
    "music_audio": music_audio_features,
    "midi": midi_features,
}


# ---------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------


@dataclass
class FeatureCache:
    """Content-addressed store of feature files under `root` (e.g. <work_dir>/cache/features)."""

    root: Path

    def path_for(self, key: str) -> Path:
        return Path(self.root) / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except Exception:  # a damaged entry (disk full, killed writer) is recomputed
            log.warning("recomputing damaged cache entry %s", path)
            return None

    def store(self, key: str, features: dict[str, np.ndarray]) -> Path:
        buffer = io.BytesIO()
        np.savez(buffer, **features)
        path = self.path_for(key)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def get(self, source: str | Path, extractor: str, mel_cfg: MelConfig | None) -> dict[str, np.ndarray]:
        """Features of `source`, computed (and stored) only when not cached yet."""
        key = feature_key(file_sha1(source), extractor, mel_cfg)
        cached = self.load(key)
        if cached is None:
            cached = EXTRACTORS[extractor](Path(source), mel_cfg)
            self.store(key, cached)
        return cached


def _summary(features: dict[str, np.ndarray], mel_cfg: MelConfig | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "mel" in features:
        out["frames"] = int(features["mel"].shape[-1])
        if mel_cfg is not None:
            out["duration"] = round(out["frames"] * mel_cfg.hop_length / mel_cfg.sample_rate, 4)
    if "pitch" in features:
        voiced = features["pitch"] > 0
        out["voiced_fraction"] = round(float(voiced.mean()), 4)
        out["pitch_mean"] = round(float(features["pitch"][voiced].mean()), 3) if voiced.any() else 0.0
    for name in ("duration", "notes"):
        if name in features and features[name].ndim == 0:
            out[name] = features[name].item()
    return out


_JOB_CONTEXT: dict[str, Any] = {}


def _init_job(cache_root: str, mel_cfg: MelConfig | None) -> None:
    try:
        import torch

        torch.set_num_threads(1)  # one core per worker; also avoids OpenMP trouble after fork
    except ImportError:  # pragma: no cover
        pass
    _JOB_CONTEXT.update(cache=FeatureCache(Path(cache_root)), mel=mel_cfg)


def _process(job: tuple[str, str, dict]) -> dict[str, Any]:
    """One file → its manifest record; never raises for a bad file (the reason is recorded)."""
    source, extractor, record = job
    cache: FeatureCache = _JOB_CONTEXT["cache"]
    mel_cfg = _JOB_CONTEXT["mel"]
    record = {**record, "path": source}
    try:
        key = feature_key(file_sha1(source), extractor, mel_cfg)
        features = cache.load(key)
        record["cached"] = features is not None
        if features is None:
            features = EXTRACTORS[extractor](Path(source), mel_cfg)
            cache.store(key, features)
        record.update(status="ok", key=key, features=str(cache.path_for(key)), **_summary(features, mel_cfg))
    except UserError as exc:
        record.update(status="failed", reason=str(exc))
    except Exception as exc:  # a library error on one odd file must not stop the others
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    return record


def run_jobs(
    jobs: Sequence[tuple[str, str, dict]],
    cache_root: Path,
    mel_cfg: MelConfig | None,
    workers: int,
    desc: str,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Process jobs (source, extractor, base record) with a progress bar; results in job order."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(jobs), desc=desc, unit="file", disable=not show)
    results: list[dict[str, Any]] = []
    if workers <= 1 or len(jobs) <= 1:
        _init_job(str(cache_root), mel_cfg)
        for job in jobs:
            results.append(_process(job))
            bar.update()
    else:
        import multiprocessing

        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=context,
            initializer=_init_job,
            initargs=(str(cache_root), mel_cfg),
        ) as pool:
            for record in pool.map(_process, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                results.append(record)
                bar.update()
    bar.close()
    return results


def _write_manifest(path: Path, records: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(path, lines.encode("utf-8"))


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Records of a manifest written by `preprocess_*` (one JSON object per line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no feature manifest at {path}; run `cinematic data preprocess` first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_features(record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of one manifest record."""
    with np.load(record["features"], allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


def _cache_dirs(work_dir: str | Path) -> tuple[Path, Path]:
    cache = Path(work_dir) / "cache"
    return cache / "features", cache


def preprocess_voice(
    data_dir: str | Path,
    mel_cfg: MelConfig,
    work_dir: str | Path,
    workers: int = 1,
    progress: bool | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Features for every utterance under `data_dir` (any supported voice layout).

    Returns the manifest path and its records; each record has the utterance's speaker, language, text
    and meta, `status` ("ok" or "failed"), and for ok ones `features` (npz path) and `frames`.
    """
    from cinematic.data.dataset import read_voice_dir

    utterances = read_voice_dir(data_dir)
    if not utterances:
        raise UserError(f"no utterances found under {data_dir} (expected <speaker>/<utt>.wav + <utt>.txt)")
    jobs = [
        (
            str(u.audio_path),
            "voice",
            {"speaker": u.speaker, "language": u.language, "text": u.text, "meta": u.meta},
        )
        for u in utterances
    ]
    features_root, cache = _cache_dirs(work_dir)
    records = run_jobs(jobs, features_root, mel_cfg, workers, "preprocess voice", progress)
    manifest = cache / "voice_manifest.jsonl"
    _write_manifest(manifest, records)
    _log_summary(records, manifest)
    return manifest, records


def preprocess_music(
    data_dir: str | Path,
    mel_cfg: MelConfig,
    work_dir: str | Path,
    workers: int = 1,
    progress: bool | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Mel features of every music audio file and a validity check of every MIDI file under `data_dir`."""
    from cinematic.data.dataset import read_music_dir

    items = read_music_dir(data_dir)
    if not items:
        raise UserError(f"no music files found under {data_dir} (expected *.mid, *.midi, *.wav, *.flac, ...)")
    jobs = [
        (str(i.path), "midi" if i.kind == "midi" else "music_audio", {"kind": i.kind, "labels": i.labels})
        for i in items
    ]
    features_root, cache = _cache_dirs(work_dir)
    records = run_jobs(jobs, features_root, mel_cfg, workers, "preprocess music", progress)
    manifest = cache / "music_manifest.jsonl"
    _write_manifest(manifest, records)
    _log_summary(records, manifest)
    return manifest, records


def _log_summary(records: list[dict[str, Any]], manifest: Path) -> None:
    failed = [r for r in records if r["status"] != "ok"]
    cached = sum(1 for r in records if r.get("cached"))
    log.info(
        "%d files: %d ok (%d from cache), %d failed; manifest %s",
        len(records),
        len(records) - len(failed),
        cached,
        len(failed),
        manifest,
    )
    for record in failed:
        log.warning("failed: %s: %s", record["path"], record["reason"])


def preprocess_command(args: Any) -> int:
    """`cinematic data preprocess {music,voice} DIR [--work_dir D] [--workers N] [--config C --set k=v]`."""
    from cinematic.configs import load_config

    cfg = load_config(args.config, args.overrides)
    work_dir = args.work_dir or cfg.training.work_dir
    workers = args.workers if args.workers is not None else max(1, cfg.data.num_workers)
    if args.kind == "voice":
        manifest, records = preprocess_voice(args.data_dir, cfg.voice_model.audio, work_dir, workers)
    else:
        manifest, records = preprocess_music(args.data_dir, cfg.music_model.audio, work_dir, workers)
    failed = [r for r in records if r["status"] != "ok"]
    cached = sum(1 for r in records if r.get("cached"))
    print(
        f"{len(records)} files: {len(records) - len(failed)} ok ({cached} reused from the cache), "
        f"{len(failed)} failed"
    )
    for record in failed:
        print(f"  failed: {record['path']}: {record['reason']}")
    print(f"manifest: {manifest}")
    return 0

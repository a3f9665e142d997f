"""Audio tokenizer of the music audio route: residual vector quantization (RVQ) of log-mel frames.

Each log-mel frame (n_mels values, one per hop) is normalised per mel bin and quantised by K codebooks
of N entries in turn, each codebook coding the residual the previous ones left (Juang & Gray 1982;
the "residual VQ" of SoundStream, Zeghidour et al. 2021, §3.2, here fitted by k-means instead of
learned end to end). A frame becomes K tokens; the first codebook carries the coarse spectral shape
and each further one refines it, so the reconstruction error falls as codebooks are added.

Fitting, one codebook after the other on the residuals of the previous ones:

* k-means++ initialisation (Arthur & Vassilvitskii 2007): each new centre drawn with probability
  proportional to its squared distance to the nearest centre chosen so far;
* mini-batch k-means updates (Sculley 2010): c ← c + η_c (mean of the batch frames assigned to c − c),
  with the per-centre rate η_c = n_c / (total count of c so far), so each centre is the running mean of
  everything ever assigned to it;
* dead-code re-seeding: a centre whose (exponentially averaged) usage falls below a fraction of the
  uniform share is moved onto a batch frame drawn k-means++-style (far from its centre), so no entry of
  the codebook is wasted — the usual failure of VQ on skewed data such as silence-heavy music;
* exact Lloyd steps over the whole frame pool at the end (a code left without frames is moved onto
  the worst-coded frame).

    rvq = MelRVQ.fit(frames, mel_cfg, num_codebooks=4, codebook_size=256)
    codes = rvq.encode(wav)        # (K, T) int64, T = len(wav) // hop
    mel = rvq.decode(codes)        # (n_mels, T) log-mel; decode(codes[:k]) uses the first k codebooks

`cinematic data tokenize DIR` fits one on a music folder with a progress bar and prints the
reconstruction report (mel L1 and SNR in dB per number of codebooks).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cinematic.configs.model_config import MelConfig
from cinematic.data.skips import UnreadableFile
from cinematic.errors import UserError
from cinematic.utils import torch_threads

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RVQFitConfig:
    """How the codebooks are fitted (stored with the tokenizer so a refit is reproducible)."""

    iterations: int = 150
    """Mini-batch k-means steps per codebook."""
    batch_size: int = 2048
    """Frames per mini-batch step."""
    max_frames: int = 200_000
    """Frame pool cap: longer data sets are subsampled evenly (all files contribute)."""
    reseed_every: int = 20
    """Check for dead codes every this many steps."""
    dead_fraction: float = 0.03
    """A code is dead when its averaged usage is below this fraction of the uniform share 1/N."""
    seed: int = 0


# ---------------------------------------------------------------------------------------- k-means parts


def _sq_distances(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (M, N) without forming an (M, N, D) tensor."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ centers.T + (centers * centers).sum(1)
    return d.clamp_min_(0.0)


def _nearest(x: torch.Tensor, centers: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centre and the squared distance to it, for each row of x."""
    idx, dist = [], []
    for start in range(0, x.shape[0], chunk):
        d = _sq_distances(x[start : start + chunk], centers)
        best = d.min(1)
        dist.append(best.values)
        idx.append(best.indices)
    if not idx:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(idx), torch.cat(dist)


def kmeans_plus_plus(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n initial centres from the rows of x by k-means++ (D² sampling)."""
    m = x.shape[0]
    centers = torch.empty(n, x.shape[1], dtype=x.dtype)
    centers[0] = x[torch.randint(m, (1,), generator=gen)]
    closest = _sq_distances(x, centers[:1]).squeeze(1)
    for i in range(1, n):
        total = closest.sum()
        if total <= 0:  # fewer distinct frames than codes: duplicates are harmless, re-seeding moves them
            pick = torch.randint(m, (1,), generator=gen)
        else:
            pick = torch.multinomial(closest / total, 1, generator=gen)
        centers[i] = x[pick]
        closest = torch.minimum(closest, _sq_distances(x, centers[i : i + 1]).squeeze(1))
    return centers


def fit_codebook(x: torch.Tensor, n: int, fit: RVQFitConfig, gen: torch.Generator) -> torch.Tensor:
    """One codebook (n, D) for the rows of x: k-means++, mini-batch updates, dead-code re-seeding."""
    m = x.shape[0]
    init_pool = x[torch.randperm(m, generator=gen)[: min(m, max(20 * n, 4096))]]
    centers = kmeans_plus_plus(init_pool, n, gen)
    counts = torch.zeros(n)
    usage = torch.full((n,), 1.0 / n)  # EMA of each code's share of assignments
    batch = min(fit.batch_size, m)
    for step in range(1, fit.iterations + 1):
        xb = x[torch.randint(m, (batch,), generator=gen)]
        idx, dist = _nearest(xb, centers)
        hits = torch.bincount(idx, minlength=n).float()
        sums = torch.zeros_like(centers).index_add_(0, idx, xb)
        counts += hits
        # Sculley 2010: per-centre learning rate = this batch's hits / all hits so far
        rate = torch.where(counts > 0, hits / counts.clamp_min(1), torch.zeros_like(hits))
        means = sums / hits.clamp_min(1).unsqueeze(1)
        centers += rate.unsqueeze(1) * (means - centers)
        usage.mul_(0.9).add_(0.1 * hits / batch)
        if step % fit.reseed_every == 0 and step < fit.iterations:
            _reseed_dead(centers, counts, usage, xb, dist, fit.dead_fraction / n, gen)
    return _finish_on_pool(x, centers)


def _finish_on_pool(x: torch.Tensor, centers: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """Exact Lloyd steps over the whole pool: centres become the true means of their cells, and a code
    that owns no frame at all is moved onto the worst-coded frame (then the cells are recomputed)."""
    for _ in range(rounds):
        idx, dist = _nearest(x, centers)
        hits = torch.bincount(idx, minlength=centers.shape[0]).float()
        sums = torch.zeros_like(centers).index_add_(0, idx, x)
        used = hits > 0
        centers[used] = sums[used] / hits[used].unsqueeze(1)
        empty = (~used).nonzero().squeeze(1)
        if empty.numel() == 0 or float(dist.max()) <= 0:
            break
        worst = dist.topk(min(empty.numel(), dist.numel())).indices
        centers[empty[: worst.numel()]] = x[worst]
    return centers


def _reseed_dead(
    centers: torch.Tensor,
    counts: torch.Tensor,
    usage: torch.Tensor,
    xb: torch.Tensor,
    dist: torch.Tensor,
    threshold: float,
    gen: torch.Generator,
) -> int:
    """Move codes whose usage fell below `threshold` onto batch frames far from their centre."""
    dead = (usage < threshold).nonzero().squeeze(1)
    if dead.numel() == 0:
        return 0
    weights = dist + 1e-12
    picks = torch.multinomial(
        weights / weights.sum(), dead.numel(), replacement=dead.numel() > len(xb), generator=gen
    )
    centers[dead] = xb[picks]
    counts[dead] = 0.0
    usage[dead] = 1.0 / centers.shape[0]
    return int(dead.numel())


# ------------------------------------------------------------------------------------------- tokenizer


class MelRVQ:
    """K residual codebooks over normalised log-mel frames, plus the mel front end they were fitted on."""

    def __init__(
        self,
        mel_cfg: MelConfig,
        mean: torch.Tensor,
        std: torch.Tensor,
        codebooks: torch.Tensor,
        fit_config: RVQFitConfig | None = None,
    ):
        self.mel_cfg = mel_cfg
        self.mean = mean.float()  # (n_mels,)
        self.std = std.float()  # (n_mels,)
        self.codebooks = codebooks.float()  # (K, N, n_mels)
        self.fit_config = fit_config or RVQFitConfig()

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @property
    def frames_per_second(self) -> float:
        return self.mel_cfg.sample_rate / self.mel_cfg.hop_length

    # ------------------------------------------------------------------------------------------- fit

    @classmethod
    def fit(
        cls,
        frames: torch.Tensor | np.ndarray,
        mel_cfg: MelConfig,
        num_codebooks: int,
        codebook_size: int,
        fit: RVQFitConfig | None = None,
        progress: bool | None = None,
    ) -> MelRVQ:
        """Fit on log-mel frames (M, n_mels): normalisation statistics, then codebook after codebook."""
        from tqdm.auto import tqdm

        fit = fit or RVQFitConfig()
        x = torch.as_tensor(frames, dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != mel_cfg.n_mels:
            raise ValueError(f"expected frames (M, {mel_cfg.n_mels}), got {tuple(x.shape)}")
        if x.shape[0] < 2:
            raise UserError("the audio tokenizer needs at least 2 mel frames of audio to fit")
        gen = torch.Generator().manual_seed(fit.seed)
        if x.shape[0] > fit.max_frames:
            x = x[torch.randperm(x.shape[0], generator=gen)[: fit.max_frames]]
        mean = x.mean(0)
        std = x.std(0).clamp_min(1e-3)  # a constant bin (e.g. above a band limit) must not divide by 0
        residual = (x - mean) / std
        codebooks = torch.empty(num_codebooks, codebook_size, mel_cfg.n_mels)
        bar = tqdm(
            range(num_codebooks), desc="fitting RVQ codebooks", unit="codebook", disable=_no_bar(progress)
        )
        with torch_threads(1), torch.no_grad():  # k-means: thousands of small ops
            for k in bar:
                codebooks[k] = fit_codebook(residual, codebook_size, fit, gen)
                idx, dist = _nearest(residual, codebooks[k])
                residual = residual - codebooks[k][idx]
                bar.set_postfix(mse=f"{dist.mean().item() / mel_cfg.n_mels:.4f}")
        return cls(mel_cfg, mean, std, codebooks, fit)

    # -------------------------------------------------------------------------------- encode / decode

    def mel(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Log-mel (n_mels, T) of a mono waveform at `mel_cfg.sample_rate`, the front end the codes use."""
        from cinematic.data.audio import mel_spectrogram

        return mel_spectrogram(torch.as_tensor(wav, dtype=torch.float32), self.mel_cfg)

    def encode(self, wav: torch.Tensor | np.ndarray, num_codebooks: int | None = None) -> torch.Tensor:
        """Mono waveform (samples,) → codes (K, T) int64; a batch (B, samples) → (B, K, T)."""
        return self.encode_mel(self.mel(wav), num_codebooks)

    def encode_mel(self, mel: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """Log-mel (n_mels, T) → codes (K, T); (B, n_mels, T) → (B, K, T)."""
        mel = torch.as_tensor(mel, dtype=torch.float32)
        if mel.dim() == 3:
            return torch.stack([self.encode_mel(m, num_codebooks) for m in mel])
        if mel.dim() != 2 or mel.shape[0] != self.mel_cfg.n_mels:
            raise ValueError(f"expected a log-mel ({self.mel_cfg.n_mels}, T), got {tuple(mel.shape)}")
        residual = (mel.T - self.mean) / self.std  # (T, n_mels)
        k_used = num_codebooks or self.num_codebooks
        codes = torch.empty(k_used, residual.shape[0], dtype=torch.long)
        with torch_threads(1), torch.no_grad():  # k-means: thousands of small ops
            for k in range(k_used):
                codes[k], _ = _nearest(residual, self.codebooks[k])
                residual = residual - self.codebooks[k][codes[k]]
        return codes

    def decode(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Codes (k, T) → log-mel (n_mels, T) from the first k ≤ K codebooks; (B, k, T) → (B, n_mels, T)."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        if codes.dim() == 3:
            return torch.stack([self.decode(c) for c in codes])
        if codes.dim() != 2 or not 1 <= codes.shape[0] <= self.num_codebooks:
            raise ValueError(f"expected codes (k ≤ {self.num_codebooks}, T), got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]"
            )
        normed = sum(self.codebooks[k][codes[k]] for k in range(codes.shape[0]))  # (T, n_mels)
        return (normed * self.std + self.mean).T.contiguous()

    # --------------------------------------------------------------------------------------- report

    def reconstruction_report(self, mels: Iterable[torch.Tensor]) -> list[dict[str, float]]:
        """Mel L1 (natural-log units) and SNR in dB for k = 1 … K codebooks, over the given log-mels.

        SNR = 10 log10(Σ (x − μ_bin)² / Σ (x − x̂)²): the error against the mel's own variation around
        the per-bin mean (a raw log-mel is mostly offset, which would flatter any codec)."""
        sums = np.zeros((self.num_codebooks, 2))
        signal = 0.0
        count = 0
        for mel in mels:
            mel = torch.as_tensor(mel, dtype=torch.float32)
            codes = self.encode_mel(mel)
            signal += float(((mel.T - self.mean) ** 2).sum())
            count += mel.numel()
            for k in range(1, self.num_codebooks + 1):
                err = mel - self.decode(codes[:k])
                sums[k - 1] += (float(err.abs().sum()), float((err**2).sum()))
        if count == 0:
            raise UserError("no audio to measure the tokenizer on")
        return [
            {
                "codebooks": k + 1,
                "mel_l1": sums[k, 0] / count,
                "snr_db": 10.0 * math.log10(max(signal, 1e-12) / max(sums[k, 1], 1e-12)),
            }
            for k in range(self.num_codebooks)
        ]

    # ---------------------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and containers (readable with `torch.load(weights_only=True)`)."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": "mel_rvq",
            "mel_config": self.mel_cfg.model_dump(),
            "mean": self.mean.clone(),
            "std": self.std.clone(),
            "codebooks": self.codebooks.clone(),
            "fit_config": asdict(self.fit_config),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MelRVQ:
        if state.get("kind") != "mel_rvq":
            raise UserError("not a mel-RVQ tokenizer state (expected kind 'mel_rvq')")
        return cls(
            MelConfig(**state["mel_config"]),
            state["mean"],
            state["std"],
            state["codebooks"],
            RVQFitConfig(**state.get("fit_config", {})),
        )

    def save(self, path: str | Path) -> Path:
        from cinematic.utils import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> MelRVQ:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer not found: {path} (fit one with `cinematic data tokenize DIR`)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"{path}: not a readable tokenizer file ({type(err).__name__}: {err})") from None
        if isinstance(state, dict) and "task_state" in state:  # a music checkpoint holds one too
            state = state["task_state"].get("tokenizer", {})
        return cls.from_state(state)

    def fingerprint(self) -> str:
        """Short content hash: caches of encoded data are keyed by it."""
        digest = hashlib.sha1()
        for tensor in (self.mean, self.std, self.codebooks):
            digest.update(tensor.numpy().tobytes())
        digest.update(self.mel_cfg.model_dump_json().encode())
        return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------ data set fitting


def _no_bar(progress: bool | None) -> bool:
    import sys

    return not (progress if progress is not None else sys.stderr.isatty())


def list_audio_files(data_dir: str | Path) -> list[Path]:
    """Audio files of a music folder (sorted), in its corpus layout, as the data pipeline reads it."""
    from cinematic.data.corpora import discover_music_corpus

    return [item.path for item in discover_music_corpus(data_dir).of_kind("audio")]


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """A file as mono float32 at `sample_rate` (the data pipeline's loader: decode, downmix, resample)."""
    from cinematic.data.audio import load_audio

    wav, _ = load_audio(path, sample_rate=sample_rate, mono=True)
    return np.asarray(wav, dtype=np.float32).reshape(-1)


class MelSource:
    """Log-mels of audio files at one `MelConfig`, each file decoded once: fitting, the report and
    encoding all read the same mels. Kept in memory up to `max_frames` frames (then recomputed)."""

    def __init__(
        self,
        mel_cfg: MelConfig,
        max_frames: int = 400_000,
        on_unreadable: Callable[[Path, str], None] | None = None,
    ):
        self.mel_cfg = mel_cfg
        self.max_frames = max_frames
        self.on_unreadable = on_unreadable
        """Called with (path, reason) for a file that cannot be decoded, which then reads as None;
        None: the error propagates."""
        self._mels: dict[Path, torch.Tensor | None] = {}
        self._frames = 0

    def __call__(self, path: Path) -> torch.Tensor | None:
        """(n_mels, T), or None (with a warning) for a file shorter than one analysis window (or, with
        `on_unreadable`, one that cannot be decoded)."""
        if path in self._mels:
            return self._mels[path]
        from cinematic.data.audio import mel_spectrogram

        try:
            wav = load_mono(path, self.mel_cfg.sample_rate)
        except UnreadableFile as err:
            if self.on_unreadable is None:
                raise
            self.on_unreadable(path, err.reason)
            self._mels[path] = None
            return None
        mel = None
        if len(wav) < self.mel_cfg.n_fft:
            log.warning(
                "%s: shorter than one analysis window (%d samples), skipped", path, self.mel_cfg.n_fft
            )
        else:
            with torch.no_grad():
                mel = mel_spectrogram(torch.from_numpy(wav), self.mel_cfg)
        if mel is None or self._frames + mel.shape[1] <= self.max_frames:
            self._mels[path] = mel
            self._frames += 0 if mel is None else mel.shape[1]
        return mel


def file_mels(
    files: Sequence[Path], mel_cfg: MelConfig, progress: bool | None = None, source: MelSource | None = None
) -> Iterable[torch.Tensor]:
    """Log-mels (n_mels, T) of audio files, one after the other, with a progress bar."""
    from tqdm.auto import tqdm

    source = source or MelSource(mel_cfg, max_frames=0)
    for path in tqdm(files, desc="mel frames", unit="file", disable=_no_bar(progress)):
        mel = source(path)
        if mel is not None:
            yield mel


def frame_pool(mels: Iterable[torch.Tensor], max_frames: int) -> torch.Tensor:
    """All frames (M, n_mels), subsampled evenly per file when the total would exceed max_frames × 4."""
    chunks = [m.T for m in mels]
    if not chunks:
        raise UserError("no usable audio to fit the tokenizer on")
    total = sum(c.shape[0] for c in chunks)
    keep = min(1.0, 4 * max_frames / total)
    if keep < 1.0:  # a long data set: keep every file's share so no piece is left out
        chunks = [c[:: max(1, round(1 / keep))] for c in chunks]
    return torch.cat(chunks)


def fit_tokenizer(
    files: Sequence[Path],
    mel_cfg: MelConfig,
    num_codebooks: int,
    codebook_size: int,
    fit: RVQFitConfig | None = None,
    progress: bool | None = None,
    source: MelSource | None = None,
) -> MelRVQ:
    fit = fit or RVQFitConfig()
    if not files:
        raise UserError("no audio files (.wav, .flac, .ogg, .mp3) to fit the audio tokenizer on")
    frames = frame_pool(file_mels(files, mel_cfg, progress, source), fit.max_frames)
    if frames.shape[0] < codebook_size:
        log.warning(
            "only %d mel frames for %d codes per codebook: many codes will be duplicates; "
            "use more audio or a smaller music_model.rvq_codebook_size",
            frames.shape[0],
            codebook_size,
        )
    return MelRVQ.fit(frames, mel_cfg, num_codebooks, codebook_size, fit, progress)


def tokenizer_cache_key(
    files: Sequence[Path], mel_cfg: MelConfig, num_codebooks: int, codebook_size: int, fit: RVQFitConfig
) -> str:
    """Hash of the data (file contents), the front end and the fitting settings."""
    from cinematic.utils import file_sha1

    payload = {
        "files": [file_sha1(p) for p in files],
        "mel": mel_cfg.model_dump(),
        "K": num_codebooks,
        "N": codebook_size,
        "fit": asdict(fit),
        "v": FORMAT_VERSION,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def fit_tokenizer_cached(
    files: Sequence[Path],
    mel_cfg: MelConfig,
    num_codebooks: int,
    codebook_size: int,
    cache_dir: Path,
    fit: RVQFitConfig | None = None,
    progress: bool | None = None,
    source: MelSource | None = None,
) -> MelRVQ:
    """`fit_tokenizer`, skipped when the same data and settings were fitted before (cache_dir/mel_rvq/)."""
    fit = fit or RVQFitConfig()
    path = (
        Path(cache_dir)
        / "mel_rvq"
        / f"{tokenizer_cache_key(files, mel_cfg, num_codebooks, codebook_size, fit)}.pth"
    )
    if path.is_file():
        try:
            log.info("audio tokenizer: reusing %s", path)
            return MelRVQ.load(path)
        except UserError:
            log.warning("%s is unreadable: fitting again", path)
    rvq = fit_tokenizer(files, mel_cfg, num_codebooks, codebook_size, fit, progress, source)
    rvq.save(path)
    return rvq


def format_report(report: list[dict[str, float]]) -> str:
    lines = ["codebooks  mel L1   SNR (dB)"]
    lines += [f"{r['codebooks']:>9d}  {r['mel_l1']:.4f}  {r['snr_db']:8.2f}" for r in report]
    return "\n".join(lines)


def tokenize_command(args: argparse.Namespace) -> int:
    """`cinematic data tokenize DIR`: fit the mel-RVQ tokenizer on a music folder and report its error."""
    from cinematic.configs import load_config

    cfg = load_config(args.config, args.overrides)
    work_dir = Path(args.work_dir or cfg.training.work_dir)
    files = list_audio_files(args.data_dir)
    music = cfg.music_model
    print(
        f"fitting {music.rvq_codebooks} codebooks × {music.rvq_codebook_size} entries on {len(files)} audio "
        f"files ({music.audio.sample_rate} Hz, hop {music.audio.hop_length}, {music.audio.n_mels} mels)",
        flush=True,
    )
    source = MelSource(music.audio)
    rvq = fit_tokenizer_cached(
        files, music.audio, music.rvq_codebooks, music.rvq_codebook_size, work_dir / "cache", source=source
    )
    out = Path(args.out) if args.out else work_dir / "music" / "tokenizer.pth"
    rvq.save(out)
    report = rvq.reconstruction_report(file_mels(files, music.audio, source=source))
    print(format_report(report))
    (out.with_suffix(".json")).write_text(
        json.dumps({"files": len(files), "report": report}, indent=2) + "\n"
    )
    print(f"tokenizer written to {out} (report: {out.with_suffix('.json')})")
    return 0

"""Does a music model follow its labels? `cinematic evaluate music` (both routes) and the figures the
music tasks log at validation when `music_model.eval_samples > 0`.

    cinematic evaluate music --checkpoint CKPT --data_dir DIR [--samples 8] [--guidance 2] --out report.json

Three figures, on the files of DIR read in their corpus layout (`cinematic.data.corpora`; the `test`
split when the corpus has one, else its `validation` split, else every file), tokenised with the
checkpoint's own tokenizer:

- `nll_per_token` / `nll_per_second`: the model's negative log-likelihood of the whole pieces under
  their true labels, cut into consecutive windows of the training length (every token a target once),
  as validation computes it.
- `label_sensitivity[c]`: for each condition c the checkpoint knows, the mean per-token NLL of the
  openings of the pieces (first `opening` tokens) under a wrong value of c minus under the true value,
  the other conditions kept at their true values; averaged over the wrong values (at most
  `max_wrong`, a seeded draw) and the pieces that carry c. A model that ignores c scores ≈ 0; one that
  uses it scores > 0. `stderr` is the standard error of that mean over the pieces (their per-piece
  differences' spread / √pieces): a figure several standard errors above 0 is an effect, not noise,
  however small (a mode label moves only the few notes that tell major from minor). A piece's true
  values are its labels (corpus or `.json`) and, for the measurable attributes, what
  `cinematic.data.attributes` measures in the file (a label wins), as in training: for a checkpoint
  trained with `music_model.attribute_window` > 0, key, mode, density, register and polyphony are
  measured on that many tokens at the piece's opening.
- `control_accuracy[c]`: `samples` pieces generated per condition, sample i requesting the i-th value
  (cycling) among the values of c that the reference files carry, no other condition given. A
  measurable attribute (key, mode, tempo, density, register, polyphony, instruments; audio: tempo,
  loudness, brightness) is measured in the sample and compared with the request. A label that cannot
  be measured (emotion, genre, scene, ...) is predicted by a classifier — scikit-learn's logistic
  regression on standardised musical features (`symbolic_features` / `audio_features`) trained on the
  training files' labels, as EMOPIA's evaluation does with its emotion classifier — and compared with
  the request; the classifier's own accuracy on held-out files (stratified cross-validation) and the
  majority-class rate are reported beside it, so a reader knows how far to trust it.
  As in `generate music`, the attributes a request leaves out are completed from a training piece that
  matches it (when the checkpoint recorded them); `--no_fill` asks for each condition alone.

The generated audio of the audio route is rendered by the checkpoint's vocoder when it can be found,
else by the Griffin-Lim preview (the report's `audio_renderer` says which).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cinematic.checkpoint_io import read_checkpoint
from cinematic.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_OPENING = 256
"""Opening length (tokens; steps on the audio route) for label sensitivity."""
MAX_WRONG = 8
"""Wrong values tried per piece and condition (a seeded draw when the condition has more)."""


# ------------------------------------------------------------------------------------------ pieces


@dataclass
class Piece:
    """One reference piece as the model sees it."""

    tokens: Any
    """Symbolic: token ids (T,) without BOS/EOS; audio: codes (K, T)."""
    labels: dict[str, str]
    """Condition → value, only conditions and values the checkpoint knows."""
    seconds: float
    path: Path | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    """Classifier features (`route.features(tokens)`), computed on first use."""


def known_labels(labels: Mapping[str, Any], vocab: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The labels whose condition the checkpoint knows and whose value it has seen (null excluded)."""
    out = {}
    for name, values in vocab.items():
        value = labels.get(name)
        if value not in (None, "") and str(value) in list(values)[1:]:
            out[name] = str(value)
    return out


def condition_row(labels: Mapping[str, str], vocab: Mapping[str, Sequence[str]]) -> list[int]:
    """Label values → one row of condition ids (0, the null label, for what is missing or unknown)."""
    row = []
    for name, values in vocab.items():
        value = labels.get(name)
        row.append(list(values).index(value) if value in list(values)[1:] else 0)
    return row


def true_attributes(
    path: Path,
    labels: Mapping[str, Any],
    names: Iterable[str],
    kind: str,
    problems: list[str],
    opening: Any = None,
) -> dict[str, str]:
    """A file's attributes as its training saw them (`tasks.music.measured_pieces`): measured, with
    the values its labels give winning; a given value that is no accepted one is added to `problems`
    and left to the measurement. `opening` (a Score of the piece's first `attribute_window` tokens):
    key, mode, density, register and polyphony measured there, as a training crop at the opening was."""
    from cinematic.data.attributes import measure_file_cached, piece_attributes, window_raw, with_sidecar

    raw, fixed, bad = with_sidecar(measure_file_cached(path, None, kind), labels, list(names))
    problems += [f"{path.name}: {b}" for b in bad]
    return piece_attributes(window_raw(raw, opening) if opening is not None else raw, fixed)


def completed(generator: Any, conditions: list[int], seed: int) -> list[int]:
    """The null attribute slots filled as `generate music` fills them (from a training piece that
    matches the request: `generation.sampling.complete_conditions`), when the checkpoint recorded the
    training pieces' combinations."""
    from cinematic.generation.sampling import complete_conditions

    sets = getattr(generator, "attribute_sets", None)
    return complete_conditions(conditions, generator.labels, sets, seed) if sets else list(conditions)


# ------------------------------------------------------------------------------------------ routes


class SymbolicRoute:
    """The MIDI route: performance/REMI tokens, attributes measured on the decoded score."""

    kind = "midi"
    unit = "tokens"

    def __init__(self, generator: Any, seq_len: int, attribute_window: int = 0) -> None:
        """`attribute_window`: the checkpoint's `music_model.attribute_window` (0 for checkpoints from
        before it): a piece's true key, mode, density, … are those of its opening's window."""
        from cinematic.data.attributes import SYMBOLIC_ATTRIBUTES

        self.generator = generator
        self.attribute_window = attribute_window
        self.model = generator.model
        self.tokenizer = generator.tokenizer
        self.vocab = generator.labels
        self.seq_len = seq_len
        self.measurable = set(SYMBOLIC_ATTRIBUTES)
        self.problems: list[str] = []
        """Attribute labels of the files that are not accepted values (measured instead)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def read(self, path: Path, labels: Mapping[str, Any]) -> Piece | None:
        """A file → Piece (None when it holds no notes); labels = measured attributes, then `labels`."""
        from cinematic.data.tokenizers.midi import load_score

        tokens = np.asarray(self.tokenizer.encode(load_score(path)), dtype=np.int64)
        if len(tokens) == 0:
            return None
        window = self.tokenizer.decode(tokens[: self.attribute_window]) if self.attribute_window else None
        measured = true_attributes(path, labels, self.measurable, "symbolic", self.problems, window)
        merged = {**labels, **measured}
        return Piece(tokens, known_labels(merged, self.vocab), self.tokenizer.seconds(tokens), path)

    def sequence(self, tokens: Any) -> torch.Tensor:
        """(1, T + 2): BOS, the tokens, EOS."""
        tok = self.tokenizer
        return torch.as_tensor(np.concatenate([[tok.bos_id], tokens, [tok.eos_id]]), dtype=torch.long)[None]

    def window_nll(self, window: torch.Tensor, conditions: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Summed NLL per condition row (R,) of one window (1, L + 1) and its number of targets."""
        rows = conditions.size(0)
        inputs = window[:, :-1].expand(rows, -1).to(self.device)
        targets = window[:, 1:].expand(rows, -1).to(self.device)
        logits = self.model(inputs, conditions.to(self.device))[:, 0].float()  # (R, L, V)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(dim=1)
        return nll.cpu(), targets.size(1)

    def opening(self, tokens: Any, length: int) -> torch.Tensor:
        return self.sequence(tokens)[:, : length + 1]

    def generate(
        self, conditions: list[int], seed: int, length: int, fill: bool = True, **sampling: Any
    ) -> np.ndarray:
        from cinematic.generation.music import generate_tokens

        tok = self.tokenizer
        return generate_tokens(
            self.model,
            completed(self.generator, conditions, seed) if fill else conditions,
            length,
            bos_id=tok.bos_id,
            eos_id=tok.eos_id,
            banned=(tok.pad_id, tok.bos_id),
            seed=seed,
            **sampling,
        )

    def measure(self, tokens: np.ndarray) -> dict[str, str]:
        from cinematic.data.attributes import measure_score

        return measure_score(self.tokenizer.decode(tokens)) if len(tokens) else {}

    def features(self, tokens: np.ndarray) -> np.ndarray:
        from cinematic.data.tokenizers.midi import PerformanceTokenizer

        notes = PerformanceTokenizer().normalize(self.tokenizer.decode(tokens)) if len(tokens) else None
        return symbolic_features(notes)


class AudioRoute:
    """The audio route: mel-RVQ codes in the delay pattern, attributes measured on rendered audio."""

    kind = "audio"
    unit = "code tokens"

    def __init__(self, generator: Any, seq_len: int) -> None:
        from cinematic.data.attributes import AUDIO_ATTRIBUTES
        from cinematic.data.tokenizers.delay import StreamVocab

        self.generator = generator
        self.model = generator.model
        self.rvq = generator.tokenizer
        self.vocab = generator.labels
        self.stream_vocab = StreamVocab(self.rvq.codebook_size)
        self.seq_len = seq_len
        self.measurable = set(AUDIO_ATTRIBUTES)
        self.problems: list[str] = []
        self.renderer: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.rvq.mel_cfg.sample_rate

    def read(self, path: Path, labels: Mapping[str, Any]) -> Piece | None:
        from cinematic.data.tokenizers.mel_rvq import load_mono

        wav = load_mono(path, self.sample_rate)
        if len(wav) < self.rvq.mel_cfg.n_fft:
            log.warning("%s: shorter than one analysis window, left out", path)
            return None
        with torch.no_grad():
            codes = self.rvq.encode(wav)
        measured = true_attributes(path, labels, self.measurable, "audio", self.problems)
        merged = {**labels, **measured}
        seconds = codes.shape[1] / self.rvq.frames_per_second
        return Piece(codes, known_labels(merged, self.vocab), seconds, path)

    def sequence(self, codes: Any) -> torch.Tensor:
        """(1, K, 1 + T + K − 1): BOS, then the delay-interleaved codes."""
        from cinematic.data.tokenizers.delay import delayed_sequence

        return delayed_sequence(torch.as_tensor(codes, dtype=torch.long), self.stream_vocab)[None]

    def window_nll(self, window: torch.Tensor, conditions: torch.Tensor) -> tuple[torch.Tensor, int]:
        rows = conditions.size(0)
        inputs = window[:, :, :-1].expand(rows, -1, -1).to(self.device)
        targets = window[:, :, 1:].expand(rows, -1, -1).to(self.device)
        logits = self.model(inputs, conditions.to(self.device)).float()  # (R, K, L, V)
        counted = targets < self.stream_vocab.empty_id  # EMPTY (delay filler) is never a target
        nll = F.cross_entropy(
            logits.permute(0, 3, 1, 2), targets.clamp(max=logits.size(-1) - 1), reduction="none"
        )
        return (nll * counted).sum(dim=(1, 2)).cpu(), int(counted[0].sum())

    def opening(self, codes: Any, length: int) -> torch.Tensor:
        return self.sequence(codes)[:, :, : length + 1]

    def generate(
        self, conditions: list[int], seed: int, length: int, fill: bool = True, **sampling: Any
    ) -> torch.Tensor:
        from cinematic.generation.music_audio import generate_codes

        return generate_codes(
            self.model,
            completed(self.generator, conditions, seed) if fill else conditions,
            max(1, length),
            empty_id=self.stream_vocab.empty_id,
            bos_id=self.stream_vocab.bos_id,
            seed=seed,
            **sampling,
        )

    def waveform(self, codes: torch.Tensor) -> np.ndarray:
        """The vocoder's rendering when the checkpoint's vocoder can be found, else Griffin-Lim."""
        from cinematic.generation.music_audio import griffin_lim

        mel = self.rvq.decode(codes)
        if self.renderer in (None, "vocoder"):  # "griffin_lim" once no vocoder was found (or in training)
            try:
                wav = self.generator.vocode(mel)
                self.renderer = "vocoder"
                return wav
            except UserError as err:
                if self.renderer is None:
                    log.warning("evaluate music: no music vocoder (%s); measuring Griffin-Lim audio", err)
                self.renderer = "griffin_lim"
        return griffin_lim(mel, self.rvq.mel_cfg, n_iter=32)

    def measure(self, codes: torch.Tensor) -> dict[str, str]:
        from cinematic.data.attributes import measure_audio

        return measure_audio(self.waveform(codes), self.sample_rate)

    def features(self, codes: Any) -> np.ndarray:
        return audio_features(self.rvq.decode(torch.as_tensor(codes, dtype=torch.long)).numpy())


# ---------------------------------------------------------------------------------------- features


def symbolic_features(notes: np.ndarray | None) -> np.ndarray:
    """24 numbers describing notes (N, 4) = (onset_s, offset_s, pitch, velocity): the duration-weighted
    pitch-class histogram rotated to the estimated tonic (12), minor mode, mean and spread of pitch,
    notes per second, polyphony, mean and spread of velocity, mean log duration, tempo (bpm / 100),
    pitch range and the share of notes shorter than 1/8 s. Zeros for an empty piece."""
    from cinematic.data.attributes import measure_notes_raw

    out = np.zeros(24, dtype=np.float64)
    if notes is None or len(notes) == 0:
        return out
    notes = np.asarray(notes, dtype=np.float64)
    durations = np.maximum(notes[:, 1] - notes[:, 0], 1e-3)
    raw = measure_notes_raw(notes)
    histogram = np.bincount(notes[:, 2].astype(np.int64) % 12, weights=durations, minlength=12)
    histogram = histogram / max(histogram.sum(), 1e-9)
    out[:12] = np.roll(histogram, -int(raw.get("tonic", 0)))
    out[12] = raw.get("mode") == "minor"
    out[13] = np.average(notes[:, 2], weights=durations) / 100
    out[14] = notes[:, 2].std() / 12
    out[15] = math.log1p(raw.get("notes_per_second", 0.0))
    out[16] = raw.get("polyphony", 1.0)
    out[17] = notes[:, 3].mean() / 127
    out[18] = notes[:, 3].std() / 127
    out[19] = np.log(durations).mean()
    out[20] = raw.get("bpm", 0.0) / 100
    out[21] = (notes[:, 2].max() - notes[:, 2].min()) / 48
    out[22] = (durations < 0.125).mean()
    out[23] = math.log1p(len(notes))
    return out


def audio_features(mel: np.ndarray, bands: int = 16) -> np.ndarray:
    """2 · bands + 2 numbers describing a log-mel (n_mels, T): the mean and the temporal spread of the
    level in `bands` equal groups of mel bins, the mean positive spectral flux and the overall level."""
    mel = np.asarray(mel, dtype=np.float64)
    if mel.ndim != 2 or mel.shape[1] == 0:
        return np.zeros(2 * bands + 2)
    groups = np.array_split(mel, bands, axis=0)
    band = np.stack([g.mean(axis=0) for g in groups])  # (bands, T)
    flux = np.maximum(np.diff(mel, axis=1), 0).sum(axis=0).mean() / mel.shape[0] if mel.shape[1] > 1 else 0.0
    return np.concatenate([band.mean(axis=1), band.std(axis=1), [flux, mel.mean()]])


# --------------------------------------------------------------------------------------- the figures


def _progress(items: Iterable[Any], desc: str, total: int | None = None, show: bool = True) -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, unit="item", disable=not show, mininterval=1.0)


@torch.no_grad()
def piece_nll(route: Any, pieces: Sequence[Piece], progress: bool = True) -> dict[str, float]:
    """NLL of whole pieces under their true labels: consecutive windows of `route.seq_len` targets."""
    total = tokens = seconds = 0.0
    for piece in _progress(pieces, "NLL", show=progress):
        seq = route.sequence(piece.tokens)
        cond = torch.tensor([condition_row(piece.labels, route.vocab)], dtype=torch.long)
        length = seq.shape[-1]
        for start in range(0, length - 1, route.seq_len):
            nll, count = route.window_nll(seq[..., start : start + route.seq_len + 1], cond)
            total += float(nll[0])
            tokens += count
        seconds += piece.seconds
    return {
        "nll_per_token": total / tokens if tokens else math.nan,
        "nll_per_second": total / seconds if seconds > 0 else math.nan,
        "tokens": int(tokens),
        "seconds": round(seconds, 3),
    }


@torch.no_grad()
def label_sensitivity(
    route: Any,
    pieces: Sequence[Piece],
    opening: int = DEFAULT_OPENING,
    max_wrong: int = MAX_WRONG,
    seed: int = 0,
    progress: bool = True,
    names: Iterable[str] | None = None,
    alone: bool = False,
) -> dict[str, dict[str, float]]:
    """{condition: {"delta_nll", "stderr", "true_nll", "wrong_nll", "pieces"}} (see the module
    docstring) for the conditions `names` (default: all); conditions that no piece carries are left out.
    `alone`: every *other* condition null instead of true (does this condition alone move the model?)."""
    rng = np.random.default_rng(seed)
    per_piece: dict[str, list[tuple[float, float]]] = {}  # (true, mean wrong) NLL per token
    wanted = list(route.vocab) if names is None else [n for n in route.vocab if n in set(names)]
    work = [(p, name) for p in pieces for name in wanted if name in p.labels]
    for piece, name in _progress(work, "label sensitivity", show=progress):
        values = list(route.vocab[name])
        column = list(route.vocab).index(name)
        true_id = values.index(piece.labels[name])
        wrong = [i for i in range(1, len(values)) if i != true_id]
        if not wrong:
            continue
        if len(wrong) > max_wrong:
            wrong = sorted(int(i) for i in rng.choice(wrong, size=max_wrong, replace=False))
        base = condition_row({name: piece.labels[name]} if alone else piece.labels, route.vocab)
        rows = torch.tensor([base] * (1 + len(wrong)), dtype=torch.long)
        rows[1:, column] = torch.tensor(wrong)
        nll, count = route.window_nll(route.opening(piece.tokens, opening), rows)
        per_token = nll / max(count, 1)
        per_piece.setdefault(name, []).append((float(per_token[0]), float(per_token[1:].mean())))
    return {name: _sensitivity_figures(np.asarray(pairs)) for name, pairs in per_piece.items()}


def _sensitivity_figures(pairs: np.ndarray) -> dict[str, float]:
    """Mean (true, wrong) NLL per token over pieces, their difference and its standard error."""
    true, wrong = pairs[:, 0], pairs[:, 1]
    deltas = wrong - true
    spread = float(deltas.std(ddof=1)) if len(deltas) > 1 else 0.0
    return {
        "delta_nll": float(deltas.mean()),
        "stderr": spread / float(np.sqrt(len(deltas))),
        "true_nll": float(true.mean()),
        "wrong_nll": float(wrong.mean()),
        "pieces": len(deltas),
    }


def _features(route: Any, piece: Piece) -> np.ndarray:
    if piece.features is None:
        piece.features = route.features(piece.tokens)
    return piece.features


@dataclass
class LabelClassifier:
    """Logistic regression on standardised features predicting one label, with its held-out accuracy."""

    name: str
    model: Any
    heldout_accuracy: float | None
    majority_rate: float
    files: int


def train_classifier(route: Any, name: str, pieces: Sequence[Piece], seed: int = 0) -> LabelClassifier | str:
    """The classifier of label `name` trained on the pieces that carry it, or why there is none."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labelled = [p for p in pieces if name in p.labels]
    y = np.array([p.labels[name] for p in labelled])
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        return f"the training files carry {len(classes)} value(s) of {name}; a classifier needs two"
    x = np.stack([_features(route, p) for p in labelled])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    folds = int(min(5, counts.min()))
    heldout = None
    if folds >= 2:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        heldout = float(cross_val_score(model, x, y, cv=cv).mean())
    model.fit(x, y)
    return LabelClassifier(name, model, heldout, float(counts.max() / counts.sum()), len(labelled))


def control_accuracy(
    route: Any,
    train_pieces: Sequence[Piece],
    eval_pieces: Sequence[Piece],
    samples: int,
    length: int,
    guidance: float = 1.0,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    progress: bool = True,
    fill_attributes: bool = True,
) -> dict[str, dict[str, Any]]:
    """{condition: {"accuracy", "samples", "method", ...}} for every condition the reference pieces
    carry: `samples` pieces generated per condition (see the module docstring). `fill_attributes`: the
    attributes a request leaves out are completed as `generate music` does (`completed`); False asks
    for the one condition alone, every other null."""
    if samples <= 0:
        return {}
    reference = [*train_pieces, *eval_pieces]
    plans = []
    for name, values in route.vocab.items():
        seen = {p.labels[name] for p in reference if name in p.labels}
        requests = [v for v in list(values)[1:] if v in seen]
        if requests:
            plans.append((name, requests))
    report: dict[str, dict[str, Any]] = {}
    classifiers: dict[str, LabelClassifier] = {}
    for name, _ in plans:
        if name not in route.measurable:
            made = train_classifier(route, name, train_pieces or eval_pieces, seed)
            if isinstance(made, str):
                report[name] = {"accuracy": None, "samples": 0, "method": "classifier", "note": made}
            else:
                classifiers[name] = made
    sampling = {"guidance": guidance, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    work = [(name, requests, i) for name, requests in plans if name not in report for i in range(samples)]
    hits: dict[str, int] = {}
    unmeasured: dict[str, int] = {}
    for name, requests, i in _progress(work, "generating for control accuracy", show=progress):
        wanted = requests[i % len(requests)]
        conditions = condition_row({name: wanted}, route.vocab)
        sample = route.generate(conditions, seed=seed + i, length=length, fill=fill_attributes, **sampling)
        if name in route.measurable:
            got = route.measure(sample).get(name)
            unmeasured[name] = unmeasured.get(name, 0) + (got is None)
        else:
            got = str(classifiers[name].model.predict(route.features(sample)[None])[0])
        hits[name] = hits.get(name, 0) + (got == wanted)
    for name, requests in plans:
        if name in report:
            continue
        entry: dict[str, Any] = {
            "accuracy": hits.get(name, 0) / samples,
            "samples": samples,
            "requested": requests[: min(len(requests), samples)],
        }
        if name in route.measurable:
            entry.update(method="measured", unmeasured=unmeasured.get(name, 0))
        else:
            clf = classifiers[name]
            entry.update(
                method="classifier",
                classifier_heldout_accuracy=clf.heldout_accuracy,
                classifier_majority_rate=clf.majority_rate,
                classifier_files=clf.files,
            )
        report[name] = entry
    return report


def evaluate_pieces(
    route: Any,
    eval_pieces: Sequence[Piece],
    train_pieces: Sequence[Piece],
    *,
    samples: int = 8,
    length: int = 512,
    guidance: float = 1.0,
    seed: int = 0,
    opening: int = DEFAULT_OPENING,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    progress: bool = True,
    with_nll: bool = True,
    fill_attributes: bool = True,
) -> dict[str, Any]:
    """The three figures on pieces already read (what `evaluate_music` and validation share)."""
    was_training = route.model.training
    route.model.eval()
    try:
        nll = piece_nll(route, eval_pieces, progress) if with_nll else {}
        detail = label_sensitivity(route, eval_pieces, opening, seed=seed, progress=progress)
        control = control_accuracy(
            route,
            train_pieces,
            eval_pieces,
            samples,
            length,
            guidance=guidance,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            progress=progress,
            fill_attributes=fill_attributes,
        )
    finally:
        route.model.train(was_training)
    return {
        **nll,
        "label_sensitivity": {name: d["delta_nll"] for name, d in detail.items()},
        "label_sensitivity_detail": detail,
        "control_accuracy": control,
        "guidance": guidance,
        "fill_attributes": fill_attributes,
        "samples": samples,
        "opening": opening,
    }


def scalar_figures(report: Mapping[str, Any], prefix: str = "eval/") -> dict[str, float]:
    """The report's numbers as flat `{prefix + name: value}` scalars (for TensorBoard)."""
    out = {}
    for key in ("nll_per_token", "nll_per_second"):
        if isinstance(report.get(key), float) and math.isfinite(report[key]):
            out[f"{prefix}{key}"] = report[key]
    for name, value in report.get("label_sensitivity", {}).items():
        out[f"{prefix}label_sensitivity/{name}"] = float(value)
    for name, entry in report.get("control_accuracy", {}).items():
        if entry.get("accuracy") is not None:
            out[f"{prefix}control_accuracy/{name}"] = float(entry["accuracy"])
    return out


# ------------------------------------------------------------------------------------ in training

VALIDATION_PIECES = 16
"""Validation pieces whose openings the training-time figures use (the first ones)."""
CLASSIFIER_PIECES = 256
"""Training pieces the training-time classifiers learn from at most (a seeded draw)."""


@dataclass
class TrainingEvaluator:
    """`evaluate music`'s figures at each validation of a music run (`music_model.eval_samples` > 0):
    `val/label_sensitivity/<c>` on the openings of the first validation pieces and
    `val/control_accuracy/<c>` on `samples` generated pieces per condition, without guidance; the
    classifiers learn from the training pieces (their features are computed once). Generated audio is
    measured on its Griffin-Lim rendering (the music vocoder is trained after the transformer)."""

    train_pieces: list[Piece]
    val_pieces: list[Piece]
    samples: int
    length: int
    """Tokens (symbolic) or frames (audio) per generated piece."""
    seq_len: int
    seed: int = 0

    @classmethod
    def build(
        cls,
        sequences: Sequence[Any],
        label_dicts: Sequence[Mapping[str, Any]],
        train_idx: Sequence[int],
        val_idx: Sequence[int],
        vocab: Mapping[str, Sequence[str]],
        seconds_of: Any,
        *,
        samples: int,
        length: int,
        seq_len: int,
        seed: int = 0,
    ) -> TrainingEvaluator:
        """From what a music task holds after `build`: token arrays (or codes), each piece's labels with
        its measured attributes as bucket values, the split, and a function giving a piece's seconds."""
        train = list(train_idx)
        if len(train) > CLASSIFIER_PIECES:
            train = sorted(
                train[int(i)] for i in np.random.default_rng(seed).permutation(len(train))[:CLASSIFIER_PIECES]
            )

        def pieces(indices: Sequence[int]) -> list[Piece]:
            return [
                Piece(sequences[i], known_labels(label_dicts[i], vocab), float(seconds_of(sequences[i])))
                for i in indices
            ]

        return cls(pieces(train), pieces(list(val_idx)[:VALIDATION_PIECES]), samples, length, seq_len, seed)

    def figures(self, generator: Any, prefix: str = "val/") -> dict[str, float]:
        """The scalars for a generator (`MusicGenerator` or `AudioMusicGenerator`) of the model being
        trained."""
        from cinematic.generation.music_audio import AudioMusicGenerator

        if isinstance(generator, AudioMusicGenerator):
            route: Any = AudioRoute(generator, self.seq_len)
            route.renderer = "griffin_lim"
        else:
            route = SymbolicRoute(generator, self.seq_len)
        report = evaluate_pieces(
            route,
            self.val_pieces,
            self.train_pieces,
            samples=self.samples,
            length=self.length,
            seed=self.seed,
            progress=False,
            with_nll=False,  # validation reports it already
        )
        return scalar_figures(report, prefix)


# ------------------------------------------------------------------------------ from a checkpoint


def make_route(checkpoint: Mapping[str, Any], device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """The route of a music checkpoint, with its generator loaded (EMA weights when kept)."""
    from cinematic.generation.music import MusicGenerator, is_audio_checkpoint

    if checkpoint.get("task") != "music":
        raise UserError(f"a {checkpoint.get('task')!r} checkpoint, not a music one")
    section = (checkpoint.get("config") or {}).get("music_model") or {}
    seq_len = int(section.get("max_seq_len") or 1024)
    if is_audio_checkpoint(dict(checkpoint)):
        from cinematic.generation.music_audio import AudioMusicGenerator

        return AudioRoute(AudioMusicGenerator.from_checkpoint(dict(checkpoint), device, **kwargs), seq_len)
    window = int(section.get("attribute_window") or 0)
    return SymbolicRoute(MusicGenerator.from_checkpoint(dict(checkpoint), device), seq_len, window)


def read_pieces(
    route: Any, items: Sequence[Any], max_files: int | None, seed: int, what: str, progress: bool = True
) -> tuple[list[Piece], list[dict[str, str]]]:
    """Pieces of corpus items (a seeded draw of `max_files` when there are more), and the files left
    out with the reason."""
    from cinematic.data.skips import UnreadableFile

    items = list(items)
    if max_files is not None and len(items) > max_files:
        keep = np.random.default_rng(seed).permutation(len(items))[:max_files]
        items = [items[int(i)] for i in sorted(keep)]
    pieces, skipped = [], []
    for item in _progress(items, f"reading {what} files", show=progress):
        try:
            piece = route.read(item.path, item.labels)
        except UnreadableFile as err:
            skipped.append({"path": str(item.path), "reason": err.reason})
            continue
        if piece is None:
            skipped.append({"path": str(item.path), "reason": "no notes or too short"})
        else:
            pieces.append(piece)
    return pieces, skipped


def evaluate_music(
    checkpoint: Mapping[str, Any],
    data_dir: str | Path,
    *,
    samples: int = 8,
    guidance: float = 1.0,
    seed: int = 0,
    length: int = 512,
    duration: float = 5.0,
    opening: int = DEFAULT_OPENING,
    max_files: int | None = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    device: str | torch.device = "cpu",
    vocoder: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    fill_attributes: bool = True,
) -> dict[str, Any]:
    """The JSON report of `cinematic evaluate music` (see the module docstring)."""
    from cinematic.data.corpora import discover_music_corpus

    if samples < 0:
        raise UserError(f"--samples must be 0 or more, got {samples}")
    if opening < 1 or length < 1 or not duration > 0:
        raise UserError("--opening and --length must be at least 1 and --duration positive")
    kwargs = {"vocoder": vocoder, "checkpoint_path": checkpoint_path}
    route = make_route(checkpoint, device, **kwargs)
    corpus = discover_music_corpus(data_dir)
    items = corpus.of_kind(route.kind)
    if not items:
        wanted = "MIDI (*.mid, *.midi)" if route.kind == "midi" else "audio (*.wav, *.flac, ...)"
        raise UserError(
            f"{data_dir}: no {wanted} files; this checkpoint is of the {route.kind} route and is evaluated "
            "on files of that kind"
        )
    if corpus.has_split:
        split = next(s for s in ("test", "validation", "train") if any(i.split == s for i in items))
        eval_items = [i for i in items if i.split == split]
        train_items = [i for i in items if i.split == "train"] or eval_items
    else:
        split, eval_items, train_items = "all", items, items
    eval_pieces, skipped = read_pieces(route, eval_items, max_files, seed, "evaluation", progress)
    if not eval_pieces:
        raise UserError(f"{data_dir}: none of its {route.kind} files can be used ({len(skipped)} left out)")
    if train_items is eval_items:
        train_pieces = eval_pieces
    else:
        need_classifier = samples > 0 and any(name not in route.measurable for name in route.vocab)
        train_pieces, more = (
            read_pieces(route, train_items, max_files, seed, "training", progress)
            if need_classifier
            else ([], [])
        )
        skipped += more
    if route.problems:
        log.warning(
            "%d .json attribute value(s) are no accepted value and the measured ones are used instead "
            "(e.g. %s)",
            len(route.problems),
            "; ".join(route.problems[:3]),
        )
    sample_length = length if route.kind == "midi" else round(duration * route.rvq.frames_per_second)
    report = evaluate_pieces(
        route,
        eval_pieces,
        train_pieces,
        samples=samples,
        length=sample_length,
        guidance=guidance,
        seed=seed,
        opening=opening,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        progress=progress,
        fill_attributes=fill_attributes,
    )
    report.update(
        route=route.kind,
        layout=corpus.layout,
        split=split,
        files=len(eval_pieces),
        classifier_files=len(train_pieces),
        conditions={name: list(values)[1:] for name, values in route.vocab.items()},
        skipped=skipped,
    )
    if route.kind == "audio":
        report["audio_renderer"] = route.renderer
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """The report as a small text table."""
    lines = [f"{'figure':<44} value", "-" * 60]
    lines.append(f"{'NLL per token (' + report['route'] + ')':<44} {report['nll_per_token']:.4f}")
    lines.append(f"{'NLL per second':<44} {report['nll_per_second']:.4f}")
    for name, detail in report["label_sensitivity_detail"].items():
        label = f"label sensitivity: {name} (nat/token)"
        figure = f"{detail['delta_nll']:+.4f} ± {detail['stderr']:.4f}"
        lines.append(f"{label:<44} {figure}  ({detail['pieces']} openings)")
    for name, entry in report["control_accuracy"].items():
        label = f"control accuracy: {name} ({entry['method']})"
        if entry.get("accuracy") is None:
            lines.append(f"{label:<44} n/a    ({entry.get('note', '')})")
            continue
        extra = f"{entry['samples']} samples"
        if entry["method"] == "classifier":
            held = entry["classifier_heldout_accuracy"]
            extra += (
                f"; classifier held-out {held:.2f}"
                if held is not None
                else "; classifier not cross-validated"
            )
            extra += f", majority {entry['classifier_majority_rate']:.2f}"
        lines.append(f"{label:<44} {entry['accuracy']:.3f}  ({extra})")
    lines.append(
        f"({report['files']} {report['layout']} files, split {report['split']!r}, guidance {report['guidance']:g}"
        + (f"; {len(report['skipped'])} left out, see 'skipped')" if report["skipped"] else ")")
    )
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """The report with NaN/inf (a figure that could not be computed) as null: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def evaluate_command(args: argparse.Namespace) -> int:
    """`cinematic evaluate music --checkpoint CKPT --data_dir DIR [--samples N] [--guidance W] --out report.json`."""
    from cinematic.utils import atomic_write_bytes

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise UserError(f"--out {out}: the report is JSON; give a .json file")
    if not Path(args.data_dir).is_dir():
        raise UserError(f"--data_dir {args.data_dir}: folder not found")
    checkpoint = read_checkpoint(args.checkpoint)
    report = evaluate_music(
        checkpoint,
        args.data_dir,
        samples=args.samples,
        guidance=args.guidance,
        seed=args.seed,
        length=args.length,
        duration=args.duration,
        opening=args.opening,
        max_files=args.max_files,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        device=getattr(args, "device", "cpu"),
        vocoder=getattr(args, "vocoder", None),
        checkpoint_path=args.checkpoint,
        fill_attributes=not getattr(args, "no_fill", False),
    )
    atomic_write_bytes(out, (json.dumps(_finite(report), indent=2, allow_nan=False) + "\n").encode())
    print(format_table(report))
    print(f"wrote {out}")
    return 0

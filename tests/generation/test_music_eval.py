"""`cinematic evaluate music` (cinematic.generation.music_eval): label sensitivity is ≈ 0 for a model trained
with shuffled labels and clearly > 0 for one whose labels decide the notes, the JSON report, and bad input.

The toy music: the emotion decides the octave ("calm" low, "bright" high) and the mode decides the triad
(C major or A minor), independently, so each label carries information the other does not."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from cinematic.data.tokenizers.midi import PerformanceTokenizer
from cinematic.generation.music import MusicGenerator
from cinematic.generation.music_eval import Piece, SymbolicRoute, label_sensitivity, piece_nll
from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig
from cinematic.utils import torch_threads

TOK = PerformanceTokenizer()
LABELS = {"emotion": ["<none>", "bright", "calm"], "mode": ["<none>", "major", "minor"]}
TRIADS = {1: (60, 64, 67), 2: (57, 60, 64)}  # mode id → C major / A minor
OCTAVE = {1: 12, 2: 0}  # emotion id → bright: one octave up, calm: as is

pytestmark = pytest.mark.usefixtures("one_thread")


def _tokens(rng: np.random.Generator, emotion: int, mode: int, notes: int = 8) -> list[int]:
    """Note on, 0.25 s, note off, `notes` times (no BOS/EOS)."""
    out = []
    for _ in range(notes):
        pitch = int(rng.choice(TRIADS[mode])) + OCTAVE[emotion]
        out += [TOK.note_on_offset + pitch, TOK.shift_offset + 24, TOK.note_off_offset + pitch]
    return out


def _train(shuffled: bool, steps: int = 120) -> MusicTransformer:
    """A 1-layer model on the toy music; `shuffled`: each piece shown with another piece's labels."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = MusicTransformerConfig(
        vocab_size=TOK.vocab_size,
        num_layers=1,
        num_heads=2,
        embed_dim=32,
        ff_dim=64,
        dropout=0.0,
        max_relative_position=32,
        condition_sizes=(3, 3),
        condition_dropout=0.2,
    )
    model = MusicTransformer(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with torch_threads(1):
        for _ in range(steps):
            labels = rng.integers(1, 3, size=(16, 2))
            batch = torch.tensor([[TOK.bos_id, *_tokens(rng, int(e), int(m)), TOK.eos_id] for e, m in labels])
            shown = labels[rng.permutation(16)] if shuffled else labels
            logits = model(batch[:, :-1], torch.from_numpy(shown))[:, 0]
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def models() -> dict[str, MusicTransformer]:
    return {"informed": _train(shuffled=False), "shuffled": _train(shuffled=True)}


def _pieces(count: int = 8, seed: int = 1) -> list[Piece]:
    rng = np.random.default_rng(seed)
    pieces = []
    for i in range(count):
        emotion, mode = 1 + i % 2, 1 + (i // 2) % 2
        tokens = np.asarray(_tokens(rng, emotion, mode), dtype=np.int64)
        labels = {"emotion": LABELS["emotion"][emotion], "mode": LABELS["mode"][mode]}
        pieces.append(Piece(tokens, labels, TOK.seconds(tokens)))
    return pieces


def test_label_sensitivity_is_zero_for_shuffled_labels_and_clearly_positive_for_labels_that_decide(models):
    pieces = _pieces()
    figures = {}
    for name, model in models.items():
        route = SymbolicRoute(MusicGenerator(model, TOK, LABELS), seq_len=64)
        figures[name] = label_sensitivity(route, pieces, progress=False)
        figures[f"{name} alone"] = label_sensitivity(
            route, pieces, progress=False, names=["mode"], alone=True
        )
        nll = piece_nll(route, pieces, progress=False)
        assert 0 < nll["nll_per_token"] < 2 and nll["tokens"] == sum(len(p.tokens) + 1 for p in pieces)
        assert nll["nll_per_second"] == pytest.approx(nll["nll_per_token"] * nll["tokens"] / 16.0)
    for condition in LABELS:
        informed, shuffled = figures["informed"][condition], figures["shuffled"][condition]
        assert informed["pieces"] == shuffled["pieces"] == 8
        assert abs(shuffled["delta_nll"]) < 0.05, shuffled
        assert informed["delta_nll"] > 0.25, informed  # a wrong octave or triad costs nats per note
        assert informed["wrong_nll"] - informed["true_nll"] == pytest.approx(informed["delta_nll"])
        # the standard error over pieces says which figure is an effect: many of them above 0, or noise
        assert informed["delta_nll"] > 5 * informed["stderr"] > 0, informed
        assert abs(shuffled["delta_nll"]) < max(4 * shuffled["stderr"], 0.01), shuffled
    # a condition alone (every other one null): asked for by name, the others left out of the figures
    assert set(figures["informed alone"]) == set(figures["shuffled alone"]) == {"mode"}
    informed, shuffled = figures["informed alone"]["mode"], figures["shuffled alone"]["mode"]
    assert informed["pieces"] == 8 and informed["delta_nll"] > 5 * informed["stderr"] > 0, informed
    assert abs(shuffled["delta_nll"]) < max(4 * shuffled["stderr"], 0.01), shuffled


def _write_corpus(folder: Path, count: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, piece in enumerate(_pieces(count, seed=2)):
        TOK.decode(piece.tokens).dump_midi(str(folder / f"{i:02d}.mid"))
        (folder / f"{i:02d}.json").write_text(json.dumps({"emotion": piece.labels["emotion"]}))
    return folder


def _checkpoint(model: MusicTransformer, path: Path) -> Path:
    """What the music task saves, as far as generation and evaluation read it."""
    model_cfg = asdict(model.cfg)
    model_cfg["condition_sizes"] = list(model_cfg["condition_sizes"])
    checkpoint = {
        "task": "music",
        "task_state": {
            "representation": "midi",
            "tokenizer": TOK.state(),
            "labels": LABELS,
            "model_config": model_cfg,
        },
        "model": {"music": model.state_dict()},
        "config": {"music_model": {"max_seq_len": 64}},
    }
    torch.save(checkpoint, path)
    return path


def test_evaluate_music_writes_a_json_report_with_every_figure(models, tmp_path, capsys):
    from cinematic.cli import main

    data = _write_corpus(tmp_path / "music")
    ckpt = _checkpoint(models["informed"], tmp_path / "informed.pth")
    out = tmp_path / "reports" / "report.json"
    args = ["evaluate", "music", "--checkpoint", str(ckpt), "--data_dir", str(data), "--out", str(out)]
    assert main([*args, "--samples", "4", "--length", "30", "--guidance", "2", "--opening", "32"]) == 0
    report = json.loads(out.read_text())
    assert report["route"] == "midi" and report["layout"] == "seed" and report["files"] == 16
    assert 0 < report["nll_per_token"] < 3 and report["nll_per_second"] > 0
    # the true mode comes from measuring the files (they carry only emotion labels)
    assert set(report["label_sensitivity"]) == {"emotion", "mode"}
    assert report["label_sensitivity_detail"]["mode"]["pieces"] == 16
    assert min(report["label_sensitivity"].values()) > 0.15  # measured modes are sometimes off
    mode, emotion = report["control_accuracy"]["mode"], report["control_accuracy"]["emotion"]
    assert mode["method"] == "measured" and emotion["method"] == "classifier"
    assert mode["samples"] == emotion["samples"] == 4 and mode["requested"] == ["major", "minor"]
    for entry in (mode, emotion):
        assert 0 <= entry["accuracy"] <= 1
    assert emotion["classifier_heldout_accuracy"] >= 0.75  # the octave is easy to hear
    assert emotion["classifier_majority_rate"] == 0.5
    assert emotion["accuracy"] >= 0.75  # an informed model with guidance plays the asked octave
    table = capsys.readouterr().out
    assert "label sensitivity: emotion" in table and "control accuracy: mode (measured)" in table


def test_evaluate_music_bad_input_is_a_clear_error(models, tmp_path, capsys):
    from cinematic.cli import main

    data = _write_corpus(tmp_path / "music", count=2)
    ckpt = _checkpoint(models["shuffled"], tmp_path / "m.pth")
    out = str(tmp_path / "r.json")

    def run(*extra: str, checkpoint: str = str(ckpt), data_dir: str = str(data)) -> str:
        args = ["evaluate", "music", "--checkpoint", checkpoint, "--data_dir", data_dir, "--out", out]
        assert main([*args, *extra]) == 2
        return capsys.readouterr().err

    assert "checkpoint not found" in run(checkpoint=str(tmp_path / "missing.pth"))
    assert "folder not found" in run(data_dir=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.wav").write_bytes(b"")
    assert "no MIDI (*.mid, *.midi) files" in run(data_dir=str(tmp_path / "empty"))
    assert "--samples must be 0 or more" in run("--samples", "-1")
    assert "give a .json file" in run("--out", str(tmp_path / "r.txt"))
    torch.save({"task": "voice", "model": {}}, tmp_path / "voice.pth")
    assert "not a music one" in run(checkpoint=str(tmp_path / "voice.pth"))
    (data / "00.mid").write_bytes(b"not midi")
    (data / "01.mid").write_bytes(b"")
    assert "none of its midi files can be used (2 left out)" in run()
    assert not Path(out).exists()


def test_evaluate_music_on_the_audio_route_measures_rendered_audio(tmp_path):
    """An (untrained) audio-route checkpoint: codes NLL, sensitivity and the measured loudness of
    Griffin-Lim renderings (no vocoder recorded), on WAV files of two loudness levels."""
    import soundfile as sf

    from cinematic.configs.model_config import MelConfig
    from cinematic.data.tokenizers.delay import StreamVocab
    from cinematic.data.tokenizers.mel_rvq import MelRVQ
    from cinematic.generation.music_eval import evaluate_music

    mel_cfg = MelConfig(sample_rate=16000, n_fft=512, hop_length=256, win_length=512, n_mels=32)
    codebooks = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))
    rvq = MelRVQ(mel_cfg, torch.full((32,), -4.0), torch.full((32,), 2.0), codebooks)
    torch.manual_seed(0)
    cfg = MusicTransformerConfig(
        vocab_size=StreamVocab(16).size,
        num_streams=2,
        num_layers=1,
        num_heads=2,
        embed_dim=32,
        ff_dim=64,
        max_relative_position=32,
        condition_sizes=(3, 4),
    )
    model = MusicTransformer(cfg)
    model_cfg = {**asdict(cfg), "condition_sizes": [3, 4]}
    labels = {"emotion": ["<none>", "calm", "tense"], "loudness": ["<none>", "quiet", "medium", "loud"]}
    checkpoint = {
        "task": "music",
        "task_state": {
            "representation": "audio",
            "tokenizer": rvq.state_dict(),
            "labels": labels,
            "model_config": model_cfg,
        },
        "model": {"music": model.state_dict()},
        "config": {"music_model": {"max_seq_len": 32}},
    }
    data = tmp_path / "music"
    data.mkdir()
    t = np.arange(16000 * 2) / 16000
    for i in range(4):
        level = 0.5 if i % 2 else 0.01
        sf.write(data / f"{i}.wav", level * np.sin(2 * np.pi * (220 + 110 * i) * t), 16000)
        (data / f"{i}.json").write_text(json.dumps({"emotion": "tense" if i % 2 else "calm"}))
    report = evaluate_music(checkpoint, data, samples=2, duration=1.0, opening=16, progress=False)
    assert report["route"] == "audio" and report["files"] == 4 and report["audio_renderer"] == "griffin_lim"
    assert np.log(16) * 0.5 < report["nll_per_token"] < np.log(18) * 2  # an untrained model: near uniform
    assert set(report["label_sensitivity"]) == {"emotion", "loudness"}
    assert all(abs(v) < 0.5 for v in report["label_sensitivity"].values())
    loudness = report["control_accuracy"]["loudness"]
    assert loudness["method"] == "measured" and loudness["requested"] == ["quiet", "loud"]
    assert report["control_accuracy"]["emotion"]["method"] == "classifier"


def test_validation_logs_the_figures_when_eval_samples_is_set(demo_data, tmp_path):
    """`music_model.eval_samples` > 0: each validation adds val/label_sensitivity/* and
    val/control_accuracy/* to the metrics the trainer logs (TensorBoard)."""
    import shutil

    from cinematic.configs import load_config
    from cinematic.tasks.music import MusicTask
    from cinematic.training.trainer import run_training

    data = tmp_path / "music"
    data.mkdir()
    for path in sorted((demo_data / "music").glob("*.mid"))[:6]:
        shutil.copy(path, data / path.name)
        shutil.copy(path.with_suffix(".json"), data / path.with_suffix(".json").name)
    cfg = load_config("tiny")
    cfg.training.work_dir = str(tmp_path / "work")
    cfg.training.max_steps = 1
    cfg.training.validate_every_steps = 1
    cfg.training.checkpoint_every_steps = 1
    cfg.data.val_fraction = 0.5
    section = cfg.music_model
    section.num_layers, section.max_seq_len, section.max_relative_position = 1, 32, 32
    section.genre_conditioning = section.scene_conditioning = False
    section.attributes = ["mode"]
    section.eval_samples = 2
    with torch_threads(1):
        result = run_training(MusicTask(), cfg, data)
    metrics = result.metrics_after
    assert {"val/label_sensitivity/emotion", "val/label_sensitivity/mode"} <= set(metrics)
    assert 0 <= metrics["val/control_accuracy/mode"] <= 1
    assert 0 <= metrics["val/control_accuracy/emotion"] <= 1
    assert abs(metrics["val/label_sensitivity/emotion"]) < 1  # an untrained model barely uses labels


def test_evaluate_music_measures_on_the_corpus_test_split(models, tmp_path):
    """An EMOPIA-layout folder with its split files: the figures come from the test clips alone."""
    from cinematic.generation.music_eval import evaluate_music

    root = tmp_path / "EMOPIA_1.0"
    midis = _write_corpus(root / "midis", count=6)
    names = []
    for i, path in enumerate(sorted(midis.glob("*.mid"))):
        name = f"Q{1 + i % 4}_clip_{i}.mid"
        path.rename(midis / name)
        names.append(name)
    (root / "split").mkdir()
    for split, chosen in (("train", names[:3]), ("val", names[3:4]), ("test", names[4:])):
        rows = "\n".join(f"{k},{n}" for k, n in enumerate(chosen))
        (root / "split" / f"{split}_clip.csv").write_text(f",clip_name\n{rows}\n")
    ckpt = torch.load(_checkpoint(models["informed"], tmp_path / "m.pth"), weights_only=True)
    report = evaluate_music(ckpt, root, samples=0, opening=16, progress=False)
    assert report["layout"] == "emopia" and report["split"] == "test" and report["files"] == 2
    assert report["control_accuracy"] == {} and report["tokens"] > 0
    assert report["label_sensitivity_detail"]["mode"]["pieces"] == 2

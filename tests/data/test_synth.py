"""The project's own MIDI synthesizer (cinematic.data.synth)."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from cinematic.data.synth import PEAK, render_score

SR = 16000  # a low rate keeps these tests fast; the synth works at any rate


def _score(notes, program=73, is_drum=False, pedal=None, tempo=120.0) -> symusic.Score:
    """notes: (start_beat, beats, pitch, velocity); pedal: (down_beat, up_beat)."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, tempo))
    track = symusic.Track(name="t", program=program, is_drum=is_drum)
    for start, beats, pitch, velocity in notes:
        track.notes.append(symusic.Note(int(start * 480), int(beats * 480), pitch, velocity))
    if pedal is not None:
        track.controls.append(symusic.ControlChange(int(pedal[0] * 480), 64, 127))
        track.controls.append(symusic.ControlChange(int(pedal[1] * 480), 64, 0))
    score.tracks.append(track)
    return symusic.Score.from_midi(score.dumps_midi())  # as a reader sees it: pedals from CC64


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_shapes_dtype_length_and_peak():
    score = _score([(0, 2, 69, 100)])  # one second at 120 bpm
    stereo = render_score(score, sample_rate=SR)
    mono = render_score(score, sample_rate=SR, stereo=False)
    assert stereo.dtype == np.float32 and stereo.shape == (2, 2 * SR)  # note + one second of tail
    assert mono.shape == (2 * SR,)
    assert np.abs(stereo).max() == pytest.approx(PEAK, abs=1e-4)
    assert np.abs(mono).max() == pytest.approx(PEAK, abs=1e-4)


def test_fundamental_is_the_notes_pitch():
    audio = render_score(_score([(0, 4, 69, 100)]), sample_rate=SR, stereo=False)  # A4
    segment = audio[int(0.3 * SR) : int(1.8 * SR)]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    peak_hz = np.argmax(spectrum) * SR / len(segment)
    assert peak_hz == pytest.approx(440.0, abs=3.0)


def test_louder_velocity_gives_louder_note():
    audio = render_score(_score([(0, 1, 60, 30), (4, 1, 60, 120)]), sample_rate=SR, stereo=False)
    soft = _rms(audio[int(0.05 * SR) : int(0.4 * SR)])
    loud = _rms(audio[int(2.05 * SR) : int(2.4 * SR)])
    assert loud > 3 * soft


def test_sustain_pedal_keeps_a_released_note_ringing():
    note = [(0, 0.5, 60, 100)]  # released at 0.25 s
    dry = render_score(_score(note, program=0), sample_rate=SR, stereo=False)
    pedalled = render_score(_score(note, program=0, pedal=(0, 4)), sample_rate=SR, stereo=False)
    window = slice(int(1.0 * SR), int(1.25 * SR))  # long after the key and its release
    assert pedalled.shape[0] > dry.shape[0]  # the piece now lasts until the pedal comes up
    assert _rms(pedalled[window]) > 10 * _rms(dry[window])  # dry: only the reverb tail is left


def test_drums_are_broadband_noise_bursts():
    hits = [(beat, 0.25, key, 110) for beat, key in enumerate((36, 38, 42, 49))]
    audio = render_score(_score(hits, program=0, is_drum=True), sample_rate=SR, stereo=False)
    hat = audio[int(1.0 * SR) : int(1.05 * SR)]  # closed hi-hat on beat 2
    spectrum = np.abs(np.fft.rfft(hat)) ** 2
    freqs = np.fft.rfftfreq(len(hat), 1 / SR)
    assert spectrum[freqs > 3000].sum() > spectrum[freqs < 1000].sum()  # bright noise, not a tone
    assert _rms(audio) > 0.01


def test_dense_loud_score_never_clips_and_render_is_deterministic():
    notes = [(i * 0.25, 2, 40 + (i * 7) % 50, 127) for i in range(64)]
    score = _score(notes, program=48)
    first = render_score(score, sample_rate=SR)
    assert np.abs(first).max() <= PEAK + 1e-6
    assert np.array_equal(first, render_score(score, sample_rate=SR))


def test_tick_and_second_scores_render_the_same():
    score = _score([(0, 1, 64, 90), (1, 1, 67, 90)], program=0, tempo=90.0)
    assert np.allclose(render_score(score, SR), render_score(score.to("second"), SR), atol=1e-5)


def test_empty_score_is_one_second_of_silence():
    audio = render_score(symusic.Score(480), sample_rate=SR)
    assert audio.shape == (2, SR) and not audio.any()

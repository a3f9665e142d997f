"""The demo singers of `cinematic data demo`: `OUT_DIR/singing/<singer>/<song>.wav + <song>.json`.

Four singers (two English, two Spanish) × 10 short songs (3–6.5 s, 4.6 s on average): each song is a
lyric line, split by hand into syllables, set to a melody written for it (one note per syllable, a
slurred second note on one syllable, a long last note), and sung like this:

1. espeak-ng speaks the syllables, one per word, with pauses between them (one call per song, SSML
   breaks); the pauses cut the recording into one clip per syllable (a syllable spoken alone when the cut
   does not find them all);
2. each clip is resampled so that its formants move by the singer's ratio (as Praat's "Change gender"
   does; the PSOLA pass below restores pitch and length), so voices differ in timbre;
3. the clips are laid on the melody's time line and Praat's PSOLA (a Manipulation through parselmouth)
   moves them onto the notes: a DurationTier stretches each syllable's voiced nucleus so that the
   syllable fills its notes (its onset and coda consonants keep their length), and a PitchTier holds each
   note's pitch, with the singer's vibrato on long notes and short glides between notes.

So the demo singers really follow their melodies (a test measures it with Praat) and sound different:
espeak-ng voice and variant, register, formant ratio and vibrato differ per singer. Deterministic like the
rest of the demo data: randomness comes from `numpy.random.default_rng([seed, 5, singer])`.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cinematic.data.singing import SungNote, write_song
from cinematic.errors import UserError

SAMPLE_RATE = 22050
"""espeak-ng's rate, and the voice model's mel settings (the speech vocoder renders the singing mels)."""
SONGS_PER_SINGER = 10
LEAD_IN_S = 0.15
"""Silence before the first note and after the last."""


@dataclass(frozen=True)
class Singer:
    name: str
    language: str
    gender: str
    voice: str
    """espeak-ng voice + variant."""
    espeak_pitch: int
    low: int
    """Lowest MIDI note of the singer's range (the melodies use about an octave above it)."""
    formant_ratio: float
    """Formant shift ratio (> 1: shorter vocal tract)."""
    vibrato_hz: float
    vibrato_cents: float


SINGERS = (
    Singer("en_ava", "en", "female", "en-us+f3", 60, 60, 1.08, 5.6, 22.0),
    Singer("en_leo", "en", "male", "en+m3", 35, 48, 0.94, 5.0, 16.0),
    Singer("es_sofia", "es", "female", "es+f2", 55, 57, 1.14, 6.0, 26.0),
    Singer("es_mateo", "es", "male", "es+m1", 40, 45, 1.0, 5.3, 12.0),
)

# Syllables are split by "-" inside words; every line was written for this project.
LINES = {
    "en": (
        "Stars are fall-ing on the sea",
        "Hold my hand and sing a-gain",
        "Gold-en light a-cross the hill",
        "Call me home when night is near",
        "Rain will wash the dust a-way",
        "Some-where on the o-pen road",
        "Wind is sing-ing through the trees",
        "Fly a-way my lit-tle bird",
        "Sun is ris-ing in the east",
        "Moon-light danc-es on the lake",
        "Hear the bells of win-ter ring",
        "Sail on in-to morn-ing blue",
    ),
    "es": (
        "La lu-na can-ta so-bre el mar",
        "Mi co-ra-zón es-pe-ra",
        "Ven con-mi-go a la luz",
        "El vien-to lle-va tu voz",
        "Ba-jo el cie-lo a-zul",
        "Las es-tre-llas van a dor-mir",
        "Can-ta la llu-via en la ciu-dad",
        "Quie-ro vo-lar con-ti-go",
        "Tu no-che lle-na de sol",
        "So-la la flor del ca-mi-no",
        "Ca-mi-no al a-ma-ne-cer",
        "Mi vo-ce-ci-ta can-ta",
    ),
}

MAJOR = (0, 2, 4, 5, 7, 9, 11)
_PRAAT_RANDOM = threading.Lock()


@dataclass
class SongJob:
    singer: Singer
    stem: str
    line: str
    notes: list[SungNote] = field(default_factory=list)
    tempo: int = 100
    key: str = ""


def line_syllables(line: str) -> list[str]:
    """A lyric line written with "-" between the syllables of a word → its syllables, in order."""
    return [syl for word in line.split() for syl in word.split("-") if syl]


def compose_melody(
    rng: np.random.Generator, syllables: list[str], low: int
) -> tuple[list[SungNote], int, str]:
    """A melody for a line: one note per syllable (one syllable gets a slurred second note), stepwise in a
    major key inside the singer's range, eighths and quarters at 100–132 BPM, a long last note on the
    tonic. Phonemes are left to the front end (None)."""
    tempo = int(rng.integers(100, 133))
    beat = 60.0 / tempo
    tonic = low + int(rng.integers(0, 5))
    scale = [tonic + o * 12 + step for o in (-1, 0, 1) for step in MAJOR]
    degree = scale.index(tonic) + int(rng.choice([0, 2, 4]))
    melisma = int(rng.integers(1, max(len(syllables) - 1, 2)))
    notes: list[SungNote] = []
    onset = LEAD_IN_S
    for i, syllable in enumerate(syllables):
        last = i == len(syllables) - 1
        length = beat * (1.5 if last else float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5])))
        if last:
            degree = scale.index(tonic) + (7 if degree - scale.index(tonic) > 4 else 0)
        notes.append(SungNote(syllable, scale[degree], round(onset, 4), round(length, 4)))
        onset += length
        if i == melisma and not last:
            degree = int(np.clip(degree + rng.choice([-1, 1]), 0, len(scale) - 1))
            extra = beat * 0.5
            notes.append(SungNote("", scale[degree], round(onset, 4), round(extra, 4), slur=True))
            onset += extra
        if not last:
            step = int(rng.choice([-2, -1, -1, 1, 1, 2, 0]))
            degree = int(np.clip(degree + step, scale.index(tonic) - 2, scale.index(tonic) + 9))
        if not last and rng.random() < 0.15:
            onset += beat * 0.5  # a short rest inside the line
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return notes, tempo, f"{names[tonic % 12]} major"


def singing_jobs(seed: int) -> list[SongJob]:
    """The songs each singer sings: lines of its language in a per-singer order, each with its own melody."""
    jobs = []
    for number, singer in enumerate(SINGERS):
        rng = np.random.default_rng([seed, 5, number])
        lines = LINES[singer.language]
        for i, choice in enumerate(rng.permutation(len(lines))[:SONGS_PER_SINGER]):
            line = lines[int(choice)]
            notes, tempo, key = compose_melody(rng, line_syllables(line), singer.low)
            jobs.append(SongJob(singer, f"{singer.name}_{i + 1:03d}", line, notes, tempo, key))
    _add_phonemes(jobs)
    return jobs


def _add_phonemes(jobs: list[SongJob]) -> None:
    """Each sung note's phonemes: espeak-ng's for its syllable spoken alone (as the singer speaks it), one
    phonemizer call per language, here in one thread (espeak-ng's library is not thread-safe)."""
    from cinematic.data.singing import phonemize_notes
    from cinematic.data.tokenizers.phonemes import TextFrontEnd

    front = TextFrontEnd("phonemes")
    for language in sorted({job.singer.language for job in jobs}):
        chosen = [job for job in jobs if job.singer.language == language]
        flat = [note for job in chosen for note in job.notes]
        phonemes = iter(phonemize_notes(flat, language, front))
        for job in chosen:
            job.notes = [
                note
                if note.slur
                else SungNote(note.syllable, note.pitch, note.onset, note.duration, False, ph)
                for note, ph in zip(job.notes, (next(phonemes) for _ in job.notes), strict=True)
            ]


# ---------------------------------------------------------------------------------------------- singing


def _espeak(binary: str, singer: Singer, ssml: str) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="cinematic-sing-") as tmp:
        out = Path(tmp) / "syllables.wav"
        cmd = [binary, "-m", "-v", singer.voice, "-p", str(singer.espeak_pitch), "-s", "140", "-w", str(out)]
        result = subprocess.run([*cmd, ssml], capture_output=True, check=False)
        if result.returncode != 0 or not out.is_file():
            stderr = result.stderr.decode(errors="replace").strip()
            raise UserError(f"espeak-ng failed for voice {singer.voice!r}: {stderr or result.returncode}")
        import soundfile as sf

        audio, rate = sf.read(str(out), dtype="float64")
    if rate != SAMPLE_RATE:
        raise UserError(f"espeak-ng wrote {rate} Hz audio, expected {SAMPLE_RATE}; is it espeak-ng?")
    return audio


def _sound_runs(audio: np.ndarray, min_gap_s: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges of sound separated by at least `min_gap_s` of near silence."""
    hop = int(0.005 * SAMPLE_RATE)
    frames = len(audio) // hop
    if frames == 0:
        return []
    level = np.abs(audio[: frames * hop]).reshape(frames, hop).max(1)
    loud = level > 0.02 * max(float(level.max()), 1e-9)
    runs: list[list[int]] = []
    gap = int(min_gap_s / 0.005)
    for i in np.flatnonzero(loud):
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    pad = int(0.01 * SAMPLE_RATE)
    return [(max(0, a * hop - pad), min(len(audio), (b + 1) * hop + pad)) for a, b in runs]


def spoken_syllables(binary: str, singer: Singer, syllables: list[str]) -> list[np.ndarray]:
    """One espeak-ng clip per syllable: one call with SSML breaks, cut at the pauses; syllables spoken one
    by one when the cut does not give one clip each (a stop consonant's closure can look like a pause)."""
    from xml.sax.saxutils import escape

    ssml = "<speak>" + '<break time="350ms"/>'.join(escape(s.lower()) for s in syllables) + "</speak>"
    audio = _espeak(binary, singer, ssml)
    runs = _sound_runs(audio, 0.2)
    if len(runs) == len(syllables):
        return [audio[a:b] for a, b in runs]
    clips = []
    for syllable in syllables:
        alone = _espeak(binary, singer, f"<speak>{escape(syllable.lower())}</speak>")
        found = _sound_runs(alone, 0.2)
        clips.append(alone[found[0][0] : found[-1][1]] if found else alone)
    return clips


def _nucleus(clip: np.ndarray) -> tuple[float, float]:
    """Start and end (s) of the clip's longest voiced stretch (its vowel, with voiced neighbours): 5 ms
    frames that are loud (above 15 % of the loudest frame's RMS) and periodic-looking (few zero
    crossings, unlike fricatives and bursts)."""
    hop = int(0.005 * SAMPLE_RATE)
    frames = len(clip) // hop
    duration = len(clip) / SAMPLE_RATE
    if frames < 4:
        return 0.0, duration
    x = clip[: frames * hop].reshape(frames, hop)
    rms = np.sqrt((x**2).mean(1))
    crossings = (np.diff(np.signbit(x), axis=1) != 0).mean(1)
    voiced = (rms > 0.15 * rms.max()) & (crossings < 0.12)
    best, start = (0, 0), None
    for i, v in enumerate([*voiced, False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    if best[1] - best[0] < 3:
        return 0.0, duration
    return best[0] * hop / SAMPLE_RATE, min(duration, best[1] * hop / SAMPLE_RATE)


def _hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def formant_shift(clip: np.ndarray, ratio: float) -> np.ndarray:
    """The clip played `ratio` times faster (formants, pitch and tempo × ratio): the PSOLA pass that follows
    sets pitch and length anew, so only the formants stay shifted (what Praat's "Change gender" does, in
    one PSOLA instead of two)."""
    if abs(ratio - 1.0) < 1e-3:
        return clip
    from cinematic.data.audio import resample

    return resample(clip, SAMPLE_RATE, int(round(SAMPLE_RATE / ratio)))


def phoneme_lengths(phonemes: tuple[str, ...], onset: float, core: float, coda: float) -> list[float]:
    """Seconds per phoneme of a sung syllable whose onset consonants last `onset`, its vowel stretch `core`
    and its final consonants `coda` (vowels weigh 4 and consonants 1 inside the core)."""
    from cinematic.data.singing import is_vowel

    vowels = [i for i, p in enumerate(phonemes) if is_vowel(p)]
    if not vowels:
        return [(onset + core + coda) / len(phonemes)] * len(phonemes)
    first, last = vowels[0], vowels[-1]
    lengths = [0.0] * len(phonemes)
    if first == 0:
        core += onset
    for i in range(first):
        lengths[i] = onset / first
    if last == len(phonemes) - 1:
        core += coda
    for i in range(last + 1, len(phonemes)):
        lengths[i] = coda / (len(phonemes) - 1 - last)
    weights = [4.0 if is_vowel(phonemes[i]) else 1.0 for i in range(first, last + 1)]
    for i, w in zip(range(first, last + 1), weights, strict=True):
        lengths[i] = core * w / sum(weights)
    return lengths


def sing(
    clips: list[np.ndarray], notes: list[SungNote], singer: Singer, seed: int = 0
) -> tuple[np.ndarray, list[tuple[float, ...] | None]]:
    """Lay the syllable clips on the melody and move them onto its notes with PSOLA (see the module
    docstring). `clips` holds one clip per syllable (non-slur note). → (waveform, seconds per phoneme of
    each note: the onset consonants keep their spoken length, the vowel stretch fills the note, the final
    consonants close it (they sit at the end of the first note of a melisma, as the model sings them);
    None for slurs)."""
    import parselmouth
    from parselmouth.praat import call

    groups: list[list[SungNote]] = []
    for note in notes:
        if note.slur and groups:
            groups[-1].append(note)
        else:
            groups.append([note])
    pieces: list[np.ndarray] = []
    duration_points: list[tuple[float, float]] = []  # (source time, factor)
    pitch_points: list[tuple[float, float]] = []  # (source time, Hz)
    source = 0.0
    target = 0.0
    glide = 0.03
    phone_lengths: list[tuple[float, ...] | None] = []
    for group, clip in zip(groups, clips, strict=True):
        clip = formant_shift(clip, singer.formant_ratio)
        start, end = group[0].onset, group[-1].onset + group[-1].duration
        if start > target:  # silence up to the syllable, at its own length
            gap = np.zeros(int(round((start - target) * SAMPLE_RATE)))
            pieces.append(gap)
            source += len(gap) / SAMPLE_RATE
            target = start
        length = len(clip) / SAMPLE_RATE
        want = end - start
        v0, v1 = _nucleus(clip)
        outside = v0 + (length - v1)
        if want > outside + 0.05 and v1 - v0 > 0.02:
            k = (want - outside) / (v1 - v0)
            spans = [(0.0, v0, 1.0), (v0, v1, k), (v1, length, 1.0)]
        else:  # the note is shorter than the consonants: squeeze the whole syllable
            k = want / length
            v0, v1 = 0.0, length
            spans = [(0.0, length, k)]
        first = group[0]
        if first.phonemes:
            onset_s, coda_s = (v0, length - v1) if len(spans) == 3 else (v0 * k, (length - v1) * k)
            if onset_s + coda_s > 0.8 * first.duration:
                squeeze = 0.8 * first.duration / (onset_s + coda_s)
                onset_s, coda_s = onset_s * squeeze, coda_s * squeeze
            core_s = first.duration - onset_s - coda_s
            phone_lengths.append(tuple(phoneme_lengths(first.phonemes, onset_s, core_s, coda_s)))
        else:
            phone_lengths.append(None)
        phone_lengths.extend([None] * (len(group) - 1))
        for a, b, factor in spans:
            if b - a > 1e-4:
                duration_points += [(source + a + 5e-5, factor), (source + b - 5e-5, factor)]
        # pitch: notes split the nucleus in proportion to their lengths (the nucleus stretches uniformly)
        inner_target = want - outside if len(spans) == 3 else want
        t_src = source + v0
        for j, note in enumerate(group):
            share = note.duration / want * inner_target
            span_src = share / k
            hz = _hz(note.pitch)
            first = j == 0
            a = t_src + (0.0 if first else glide / k)
            pitch_points.append((source if first else a, hz))
            # vibrato on long notes, after a quarter second (in target time), in 20 ms steps
            steps = int(span_src * k / 0.02)
            for s in range(1, steps):
                t_target = s * 0.02
                if t_target > 0.25:
                    cents = singer.vibrato_cents * np.sin(2 * np.pi * singer.vibrato_hz * (t_target - 0.25))
                    pitch_points.append((t_src + t_target / k, hz * 2 ** (cents / 1200)))
            t_src += span_src
            pitch_points.append((t_src - (glide / k if j < len(group) - 1 else 0.0), hz))
        pitch_points.append((source + length, _hz(group[-1].pitch)))
        pieces.append(clip)
        source += length
        target = end
    pieces.append(np.zeros(int(LEAD_IN_S * SAMPLE_RATE)))
    audio = np.concatenate(pieces)
    sound = parselmouth.Sound(audio, SAMPLE_RATE)
    manipulation = call(sound, "To Manipulation", 0.01, 75, 600)
    total = sound.get_total_duration()
    pitch_tier = call("Create PitchTier", "notes", 0, total)
    for t, hz in sorted(pitch_points):
        call(pitch_tier, "Add point", min(max(t, 0.0), total), hz)
    duration_tier = call("Create DurationTier", "notes", 0, total)
    call(duration_tier, "Add point", 0.0, 1.0)
    for t, factor in duration_points:
        call(duration_tier, "Add point", min(max(t, 0.0), total), factor)
    call(duration_tier, "Add point", total, 1.0)
    call([manipulation, pitch_tier], "Replace pitch tier")
    call([manipulation, duration_tier], "Replace duration tier")
    # Praat's overlap-add draws random numbers for unvoiced stretches: seed its generator (one song at a
    # time: the generator is global) so the same song gives the same samples
    with _PRAAT_RANDOM:
        parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({seed})")
        sung = call(manipulation, "Get resynthesis (overlap-add)")
        parselmouth.praat.run("random_initializeSafelyAndUnpredictably ()")
    wav = np.asarray(sung.values[0], dtype=np.float32)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    return (wav * (0.7 / peak) if peak > 0 else wav), phone_lengths


def write_demo_song(binary: str, job: SongJob, folder: Path) -> None:
    """Sing one demo song and write `<stem>.wav` and `<stem>.json` into `folder`."""
    from cinematic.data.audio import save_audio

    syllables = [n.syllable for n in job.notes if not n.slur]
    seed = int.from_bytes(hashlib.sha1(job.stem.encode()).digest()[:3], "big")
    wav, phone_lengths = sing(spoken_syllables(binary, job.singer, syllables), job.notes, job.singer, seed)
    save_audio(folder / f"{job.stem}.wav", wav, SAMPLE_RATE, subtype="PCM_16")
    write_song(
        folder / f"{job.stem}.json",
        job.notes,
        language=job.singer.language,
        phoneme_durations=phone_lengths,
        extra={
            "text": job.line,
            "tempo": job.tempo,
            "key": job.key,
            "source": "cinematic data demo (espeak-ng + Praat PSOLA)",
        },
    )


def singer_metadata(singer: Singer) -> dict:
    return {"language": singer.language, "gender": singer.gender, "espeak_voice": singer.voice}

"""Tempo, beats, key, chords per beat and loudness from separated stems.

The pulse is tracked on the drums stem (the mix when there are no drums) with a noise-robust onset envelope
(`pulse_envelope`), onsets on drums + bass, harmony on other + vocals (drums add noise to chroma, and a
separated bass stem carries the recording's low-frequency noise), the bass note per beat on the bass stem.
Chords are major/minor triad templates matched to beat-synchronous chroma, leaning toward the triad on the
bass note; the key weighs the Albrecht-Shanahan profiles against how often each key's tonic and dominant
chords sound, and the chords then lean slightly toward the key's own. Downbeats and the time signature come
from where accents of the pitched parts and kicks fall in the beat grid.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline_project.analysis.rhythm import beat_positions
from pipeline_project.analysis.sections import find_sections
from pipeline_project.audio.loudness import (
    integrated_loudness_of_steps,
    loudness_range,
    short_term_loudness_of_steps,
)
from pipeline_project.pitches import PITCH_NAMES

ANALYSIS_RATE = 22_050
HOP = 512
# Albrecht & Shanahan (2013) key profiles: on rendered chorales they confuse a key with its dominant less
# often than the Krumhansl-Kessler profiles do.
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])
KEY_SOFTMAX_TEMPERATURE = 0.05
TONIC_CHORD_WEIGHT = 0.5
DOMINANT_CHORD_WEIGHT = 0.25
DIATONIC_CHORD_BONUS = 0.03  # in cosine similarity: decides only between templates that fit a beat almost equally
BASS_ROOT_BONUS = 0.05  # likewise, for the triads built on the beat's bass note
NO_CHORD_ENERGY = 1e-3
METER_CANDIDATES = (2, 3, 4)
LONGER_BAR_MARGIN = 1.25  # a bar of 4 must show 25 % more downbeat contrast than a bar of 2 to be chosen
BASS_PROMINENCE = 1.5  # the bass note's chroma must be 1.5x the next pitch class's
METER_SOFTMAX_TEMPERATURE = 0.25
PULSE_BANDS = 64
PULSE_FFT = 2048
NOISE_FLOOR_PERCENTILE = 20  # a band's noise floor: the level it stays above 80 % of the time
PULSE_PERIODS_S = (0.4, 2.0)  # beat and bar periods a band's flux is searched for (30-150 BPM beats)
BAND_WEIGHT_POWER = 4  # sharpens the band weights so that the few bands with a clear pulse dominate


def pulse_envelope(mono: np.ndarray) -> np.ndarray:
    """Onset envelope for beat tracking that keeps its pulse under steady noise and long reverberation.

    Each mel band is measured against its own noise floor (log of power over the floor), so a band drowned
    in noise adds flux near zero instead of noise-sized flux; then each band's positive flux is weighted by
    how periodic it is (the highest normalized autocorrelation at beat and bar periods), raised to
    BAND_WEIGHT_POWER. Under a crowd or an arena's tail only a few bands (kick, snare, hi-hat) keep a
    pulse, and this envelope is made of them; librosa's default envelope averages every band equally, and
    under -5 dB of pink noise its tempo falls back to the prior's 120 BPM.
    """
    import librosa

    power = librosa.feature.melspectrogram(
        y=mono, sr=ANALYSIS_RATE, n_fft=PULSE_FFT, hop_length=HOP, n_mels=PULSE_BANDS
    )
    floor = np.percentile(power, NOISE_FLOOR_PERCENTILE, axis=1, keepdims=True)
    level = np.log1p(power / (floor + 1e-10))
    flux = np.maximum(0.0, np.diff(level, axis=1, prepend=level[:, :1]))
    # A centred frame hears an onset half a window before it happens; delaying the flux by that much puts
    # its peaks on the onsets, as librosa's onset_strength does.
    delay = PULSE_FFT // (2 * HOP)
    flux = np.pad(flux, ((0, 0), (delay, 0)))[:, : level.shape[1]]
    shortest, longest = (int(p * ANALYSIS_RATE / HOP) for p in PULSE_PERIODS_S)
    if flux.shape[1] <= longest:
        return flux.mean(axis=0)
    autocorrelation = librosa.autocorrelate(flux - flux.mean(axis=1, keepdims=True), max_size=longest + 1, axis=1)
    periodicity = np.clip(autocorrelation[:, shortest:].max(axis=1) / (autocorrelation[:, 0] + 1e-12), 0.0, None)
    weights = periodicity**BAND_WEIGHT_POWER
    if weights.sum() <= 1e-12:
        return flux.mean(axis=0)
    return (weights @ flux) / weights.sum()


def key_profile_scores(histogram: np.ndarray) -> np.ndarray:
    """(..., 24) correlation of 12-bin pitch-class histograms with every major, then every minor, key profile
    (tonics C to B). A flat histogram correlates 0 with every key."""
    profiles = np.array([np.roll(p, t) for p in (MAJOR_PROFILE, MINOR_PROFILE) for t in range(12)])
    profiles = (profiles - profiles.mean(axis=1, keepdims=True)) / profiles.std(axis=1, keepdims=True)
    histogram = np.asarray(histogram, dtype=np.float64)
    centred = histogram - histogram.mean(axis=-1, keepdims=True)
    centred = centred / (centred.std(axis=-1, keepdims=True) + 1e-9)
    return centred @ profiles.T / 12.0


def estimate_key(chroma_profile: np.ndarray) -> tuple[str, str, float, list[float]]:
    """(tonic, mode, confidence, correlations) for a 12-bin chroma profile.

    Confidence is the softmax weight of the best of the 24 key correlations.
    """
    scores = key_profile_scores(chroma_profile)
    return *best_key(scores), scores.tolist()


def best_key(scores: np.ndarray) -> tuple[str, str, float]:
    """(tonic, mode, confidence) of the best of 24 key scores (majors C to B, then minors); the confidence is
    its softmax weight at KEY_SOFTMAX_TEMPERATURE."""
    weights = np.exp((scores - scores.max()) / KEY_SOFTMAX_TEMPERATURE)
    best = int(np.argmax(scores))
    return PITCH_NAMES[best % 12], "major" if best < 12 else "minor", float(weights[best] / weights.sum())


def per_beat_median(feature: np.ndarray, beat_frames: np.ndarray) -> np.ndarray:
    """(bins, beats): the feature's median from each beat to the next (the last to the end)."""
    import librosa

    # sync() pads with frame 0 unless a beat is there already: then column 0 is the stretch before the
    # first beat, and column i + 1 starts at beat i; with a beat at frame 0, column i starts at beat i.
    synced = librosa.util.sync(feature, beat_frames, aggregate=np.median, pad=True)
    skip = 0 if len(beat_frames) and beat_frames[0] <= 0 else 1
    return synced[:, skip : skip + len(beat_frames)]


def triad_templates() -> tuple[list[str], np.ndarray]:
    labels, templates = [], []
    for quality, intervals in (("maj", (0, 4, 7)), ("min", (0, 3, 7))):
        for root in range(12):
            template = np.zeros(12)
            template[[(root + i) % 12 for i in intervals]] = 1.0
            labels.append(f"{PITCH_NAMES[root]}:{quality}")
            templates.append(template / np.linalg.norm(template))
    return labels, np.array(templates)


def chord_similarities(chroma: np.ndarray, beat_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity of each beat's median chroma to every `triad_templates` template, shape
    (beats, templates); each beat's chroma energy)."""
    _, templates = triad_templates()
    synced = per_beat_median(chroma, beat_frames)
    energy = np.linalg.norm(synced, axis=0)
    return (templates @ (synced / np.maximum(energy, 1e-12))).T, energy


def label_chords(similarity: np.ndarray, energy: np.ndarray, prior: np.ndarray | None = None) -> list[dict]:
    """One chord label per beat, with the template's cosine similarity as confidence. `prior` (one value per
    template, or one row per beat) is added to the similarities before the best is picked."""
    labels, _ = triad_templates()
    priors = np.zeros_like(similarity) if prior is None else np.broadcast_to(prior, similarity.shape)
    chords = []
    for scores, beat_prior, beat_energy in zip(similarity, priors, energy):
        if beat_energy < NO_CHORD_ENERGY:
            chords.append({"chord": "N", "confidence": 1.0})
            continue
        best = int(np.argmax(scores + beat_prior))
        chords.append({"chord": labels[best], "confidence": round(float(scores[best]), 4)})
    return chords


def chords_per_beat(chroma: np.ndarray, beat_frames: np.ndarray, prior: np.ndarray | None = None) -> list[dict]:
    """One chord label per beat interval (see `label_chords`)."""
    return label_chords(*chord_similarities(chroma, beat_frames), prior)


def diatonic_prior(tonic: str, mode: str) -> np.ndarray:
    """DIATONIC_CHORD_BONUS for each triad template that belongs to the key, 0 for the others: where a beat's
    chroma is ambiguous (reverberation, noise, passing notes), the chord the key expects wins."""
    from pipeline_project.analysis.theory import DIATONIC

    labels, _ = triad_templates()
    root = PITCH_NAMES.index(tonic)
    wanted = {f"{PITCH_NAMES[(root + step) % 12]}:{quality}" for step, quality in DIATONIC[mode]}
    return np.array([DIATONIC_CHORD_BONUS if label in wanted else 0.0 for label in labels])


def bass_root_prior(bass_notes: list[str | None]) -> np.ndarray:
    """(beats, templates): BASS_ROOT_BONUS for the triads whose root is the beat's bass note. Most chords
    stand in root position, so where two triads fit a beat's chroma about as well (C major and A minor
    share two notes), the one built on the bass wins."""
    labels, _ = triad_templates()
    roots = np.array([PITCH_NAMES.index(label.split(":")[0]) for label in labels])
    prior = np.zeros((len(bass_notes), len(labels)))
    for beat, note in enumerate(bass_notes):
        if note is not None:
            prior[beat, roots == PITCH_NAMES.index(note)] = BASS_ROOT_BONUS
    return prior


def chord_key_evidence(chords: list[dict]) -> np.ndarray:
    """(24,) for each key (major on C..B, then minor): how much of the song sits on its tonic triad and on
    its dominant (major) triad, weighted. A key is established by its tonic and dominant chords; counting them
    tells a key from its dominant or relative key where the pitch-class profile alone hesitates."""
    counts = Counter(c["chord"] for c in chords if c["chord"] != "N")
    total = max(1, sum(counts.values()))
    evidence = np.zeros(24)
    for index in range(24):
        tonic = index % 12
        tonic_chord = f"{PITCH_NAMES[tonic]}:{'maj' if index < 12 else 'min'}"
        dominant_chord = f"{PITCH_NAMES[(tonic + 7) % 12]}:maj"
        evidence[index] = TONIC_CHORD_WEIGHT * counts[tonic_chord] + DOMINANT_CHORD_WEIGHT * counts[dominant_chord]
    return evidence / total


def key_with_chords(chroma_profile: np.ndarray, chords: list[dict]) -> tuple[str, str, float]:
    """(tonic, mode, confidence): each of the 24 keys scored by its profile correlation plus
    `chord_key_evidence`."""
    return best_key(key_profile_scores(chroma_profile) + chord_key_evidence(chords))


def find_meter(beat_features: np.ndarray, onset_phases: np.ndarray) -> dict:
    """Time signature and downbeat phase from per-beat downbeat evidence, shape (features, beats).

    Each feature (loudness of the pitched parts, kick onsets) is standardized; for every bar length in
    METER_CANDIDATES and every phase, the contrast is how much more evidence falls on the would-be
    downbeats than on the other beats. A longer bar must beat a divisor of its length by a margin, since
    it always fits at least as well. Beats divided in three (onsets near 1/3 and 2/3 of a beat) make the
    metre compound: 2 beats -> 6/8, 4 -> 12/8.
    """
    beats = beat_features.shape[1]
    if beats < 8:
        return {"beats_per_bar": 4, "downbeat_phase": 0, "time_signature": "4/4", "confidence": 0.0}
    z = (beat_features - beat_features.mean(axis=1, keepdims=True)) / (beat_features.std(axis=1, keepdims=True) + 1e-9)
    salience = z.mean(axis=0)
    contrasts = {}
    for bar in METER_CANDIDATES:
        for phase in range(bar):
            on = salience[phase::bar]
            contrasts[bar, phase] = float(on.mean() - np.delete(salience, np.arange(phase, beats, bar)).mean())
    best_per_bar = {bar: max((c, p) for (b, p), c in contrasts.items() if b == bar) for bar in METER_CANDIDATES}
    bar = max(METER_CANDIDATES, key=lambda b: best_per_bar[b][0])
    for divisor in [d for d in METER_CANDIDATES if d < bar and bar % d == 0]:
        if best_per_bar[bar][0] < best_per_bar[divisor][0] * LONGER_BAR_MARGIN:
            bar = divisor
    contrast, phase = best_per_bar[bar]
    # Confidence: the chosen bar length's share of a softmax over every candidate's best contrast.
    weights = {b: np.exp(c / METER_SOFTMAX_TEMPERATURE) for b, (c, _) in best_per_bar.items()}
    confidence = float(weights[bar] / sum(weights.values()))
    compound = is_compound(onset_phases, bar)
    signature = f"{bar * 3}/8" if compound else f"{bar}/4"
    return {
        "beats_per_bar": bar,
        "downbeat_phase": int(phase),
        "time_signature": signature,
        "confidence": round(confidence, 4),
    }


def tempo_curve(beat_times: np.ndarray, downbeat_times: np.ndarray) -> tuple[list[list[float]], float]:
    """Local tempo at each downbeat (median of the surrounding 8 beat periods) and a stability score: 1 for
    a metronome, lower as the tempo wanders."""
    if len(beat_times) < 3:
        return [], 0.0
    periods = np.diff(beat_times)
    curve = []
    for time in downbeat_times:
        index = int(np.clip(np.searchsorted(beat_times, time), 0, len(periods) - 1))
        curve.append([round(float(time), 3), round(float(60.0 / np.median(periods[max(0, index - 4) : index + 4])), 2)])
    local = 60.0 / periods
    stability = float(np.clip(1.0 - np.std(local) / (np.mean(local) + 1e-9) * 4, 0.0, 1.0))
    return curve, stability


def bass_per_beat(bass_chroma: np.ndarray, beat_frames: np.ndarray) -> list[str | None]:
    """The bass stem's strongest pitch class in each beat interval (None where the bass is silent or no
    pitch class stands out): with the chord's root it gives the inversion."""
    synced = per_beat_median(bass_chroma, beat_frames)
    notes: list[str | None] = []
    for column in synced.T:
        ordered = np.sort(column)
        clear = ordered[-1] > NO_CHORD_ENERGY and ordered[-1] >= BASS_PROMINENCE * ordered[-2]
        notes.append(PITCH_NAMES[int(np.argmax(column))] if clear else None)
    return notes


def song_loudness(steps: np.ndarray) -> dict:
    """Integrated loudness and loudness range, and short-term loudness every second, from the mix's K-weighted
    100 ms energies (`audio.loudness.KWeightedSteps`); -70 LUFS (the BS.1770 absolute gate) stands for silence."""
    integrated = integrated_loudness_of_steps(steps)
    short_term = short_term_loudness_of_steps(steps)
    return {
        "loudness_lufs": round(integrated, 2) if np.isfinite(integrated) else -70.0,
        "loudness_range_lu": round(loudness_range(short_term), 2),
        "short_term_lufs": [round(float(max(v, -70.0)), 1) for v in short_term],
    }


def is_compound(onset_phases: np.ndarray, beats_per_bar: int) -> bool:
    """Beats divided in three: onsets near 1/3 and 2/3 of a beat far more often than near 1/2."""
    if not len(onset_phases) or beats_per_bar not in (2, 4):
        return False
    thirds = np.mean(np.minimum(np.abs(onset_phases - 1 / 3), np.abs(onset_phases - 2 / 3)) < 0.06)
    halves = np.mean(np.abs(onset_phases - 0.5) < 0.06)
    return bool(thirds > 3 * halves and thirds > 0.25)


def analyze(stems, sample_rate: int | None = None, models=None, use: frozenset[str] | None = None) -> dict:
    """Analysis of one song from its stems; every estimate comes with a confidence.

    `stems`: {stem: (channels, frames) array} at `sample_rate`, or any `analysis.streaming.StemSource` (such as
    `StemFiles`, the stems on disk), which is read a window at a time so memory stays flat however long the
    song (see `analysis.streaming`).

    With `models` (an `analysis.learned.ModelSet`), the networks in `use` (default: the set's promoted ones)
    run on the mix: the beat tracker gives beats, downbeats, metre and tempo; the chord recognizer chords with
    bass notes; the key tracker the keys (the song's and each stretch of bars'). Without the key tracker the
    song's key comes from the DSP path and, with the chord recognizer, the local keys from its network's key
    head around that key. What they do not give comes from the DSP path below. `analysers` in the result
    says which path made what, `models` names the versions used. Onsets, loudness and sections are DSP
    either way.
    """
    import librosa

    from pipeline_project.analysis import frames, learned
    from pipeline_project.analysis.streaming import StemArrays, song_frames

    source = stems if hasattr(stems, "read") else StemArrays(dict(stems), sample_rate)
    use = (models.promoted if use is None else use) if models is not None else frozenset()
    used = tuple(name for name in learned.MODEL_NAMES if name in use)
    song = song_frames(
        source,
        models,
        used,
        dsp_rhythm="beat_tracker" not in used,
        cqt_chroma=not {"chord_recognizer", "key_tracker"} <= set(used),  # STFT chroma is enough for sections
        bass_chroma="chord_recognizer" not in used,
    )
    duration = song.duration

    onset_envelope = song.onset_envelope
    onset_frames = librosa.onset.onset_detect(onset_envelope=onset_envelope, sr=ANALYSIS_RATE, hop_length=HOP)
    onset_times = librosa.frames_to_time(onset_frames, sr=ANALYSIS_RATE, hop_length=HOP)
    onset_strengths = onset_envelope[onset_frames] / (onset_envelope.max() + 1e-9)
    act = song.activations
    if used:
        settings = learned.DecoderSettings.of(models)

    if "beat_tracker" in used:
        found = learned.decode_rhythm(act, duration, settings)
        beat_times, downbeat_times = found["beat_times"], found["downbeat_times"]
        beat_frames = librosa.time_to_frames(beat_times, sr=ANALYSIS_RATE, hop_length=HOP)
        bar = found["beats_per_bar"]
        meter = {
            "beats_per_bar": bar,
            "confidence": found["meter_confidence"],
            "time_signature": f"{bar * 3}/8"
            if is_compound(beat_positions(onset_times, beat_times)[1], bar)
            else f"{bar}/4",
        }
        tempo, tempo_confidence = found["tempo_bpm"], found["tempo_confidence"]
        metrical_level = found["metrical_level"]
    else:
        metrical_level = "as decoded"
        # The pulse is tracked on the drums alone where there are drums: bass and pitched parts smear the
        # onset envelope, most of all in reverberant rooms.
        beat_times, beat_frames, tempo, tempo_confidence = _dsp_beats(song.pulse_strength)
        # Downbeat evidence per beat: metric accents make the pitched parts louder on the one, and the kick
        # drum lands there.
        evidence = np.vstack([_around(song.harmony_rms, beat_frames, 1), _around(song.kick, beat_frames, 2)])
        meter = find_meter(evidence, beat_positions(onset_times, beat_times)[1])
        downbeat_times = beat_times[meter["downbeat_phase"] :: meter["beats_per_bar"]]
    # No beat inside digital silence: trackers carry their pulse on through it.
    silences = silent_spans(song.level_db, duration)
    if silences:
        kept = outside(beat_times, silences)
        beat_times, beat_frames = np.asarray(beat_times)[kept], np.asarray(beat_frames)[kept]
        downbeat_times = np.asarray(downbeat_times)[outside(downbeat_times, silences)]

    if "chord_recognizer" in used:
        chords = [
            {k: v for k, v in c.items() if k != "time"}
            for c in learned.decode_chords(act, duration, settings, beat_times)["chords"]
        ]
    chroma = song.chroma
    if "chord_recognizer" not in used:
        similarity, energy = chord_similarities(chroma, beat_frames)
        bass_notes = bass_per_beat(song.bass_chroma, beat_frames)
        root_prior = bass_root_prior(bass_notes)
        first_pass = label_chords(similarity, energy, root_prior)
    # The song's pitch-class profile: the DSP key's evidence beside its chords (`key_with_chords`).
    profile = chroma.mean(axis=1)
    if "key_tracker" in used:
        found = learned.decode_keys(
            act, duration, downbeat_times, settings, chords if "chord_recognizer" in used else first_pass
        )
        tonic, mode, key_confidence, local_keys = (
            found["key_tonic"],
            found["key_mode"],
            found["key_confidence"],
            found["local_keys"],
        )
    else:
        tonic, mode, key_confidence = key_with_chords(profile, chords if "chord_recognizer" in used else first_pass)
        # With the chord recognizer, its key head still hears where the music leaves that key for a while.
        local_keys = (
            learned.local_keys_around(act, duration, downbeat_times, frames.key_class(f"{tonic}:{mode}"))
            if "key" in act
            else [{"start": 0.0, "end": round(duration, 4), "tonic": tonic, "mode": mode}]
        )
    if "chord_recognizer" not in used:
        chords = label_chords(similarity, energy, root_prior + diatonic_prior(tonic, mode))
        for chord, note in zip(chords, bass_notes):
            chord["bass"] = note
    extra = {
        "local_keys": local_keys,
        "analysers": {
            "rhythm": "learned" if "beat_tracker" in used else "dsp",
            "chords": "learned" if "chord_recognizer" in used else "dsp",
            "keys": "learned" if "key_tracker" in used else "dsp",
            "local_keys": "learned" if "key" in act else "song key",
            # Whether the learned chords' harmonic rhythm doubled the decoded beats (`learned.harmonic_level`).
            "metrical_level": metrical_level,
        },
        "models": {name: models.versions[name] for name in used},
    }
    curve, stability = tempo_curve(beat_times, downbeat_times)

    timbre = song.timbre
    per_beat = librosa.util.sync(
        np.vstack([chroma, timbre / (np.abs(timbre).max() + 1e-9)]), beat_frames, aggregate=np.mean
    )
    sections = find_sections(per_beat, [0.0, *beat_times], duration)

    return {
        "duration_s": round(duration, 3),
        "tempo_bpm": round(tempo, 2),
        "tempo_confidence": round(tempo_confidence, 4),
        "tempo_curve": curve,
        "tempo_stability": round(stability, 4),
        "pulse_source": "drums" if song.has_drums else "mix",
        "beat_times": [round(float(t), 4) for t in beat_times],
        "downbeat_times": [round(float(t), 4) for t in downbeat_times],
        "time_signature": meter["time_signature"],
        "beats_per_bar": meter["beats_per_bar"],
        "meter_confidence": meter["confidence"],
        "onset_times": [round(float(t), 4) for t in onset_times],
        "onset_strengths": [round(float(s), 3) for s in onset_strengths],
        "key_tonic": tonic,
        "key_mode": mode,
        "key_confidence": round(key_confidence, 4),
        "pitch_class_profile": [round(float(v), 6) for v in profile / (profile.sum() + 1e-12)],
        "chords": with_silence([{"time": round(float(t), 4), **c} for t, c in zip(beat_times, chords)], silences),
        "silences": [list(span) for span in silences],
        **song_loudness(song.loudness_steps),
        "sections": sections,
        **extra,
    }


# Digital silence (a gap between tracks, a hidden track's lead-in) is where no beat can be and no chord sounds:
# stretches at least this long and this quiet.
MIN_SILENCE_S = 1.0
SILENCE_DBFS = -70.0
# Before the music starts and after it ends, a recording is often not digitally silent: tape hiss, a vinyl
# run-in, room tone. There a stretch this far below the song's loud level (its 95th-percentile frame) is
# silence too, or a tracker that keeps its pulse would put beats in the hiss. Inside the song only digital
# silence counts: a general pause in a quiet hall is still part of the piece.
EDGE_SILENCE_BELOW_LOUD_DB = 50.0


def quiet_frames(level_db: np.ndarray) -> np.ndarray:
    """Mask of the frames that are silence: under SILENCE_DBFS anywhere, and in the song's lead-in and run-out,
    EDGE_SILENCE_BELOW_LOUD_DB under its loud level."""
    quiet = level_db < SILENCE_DBFS
    if not len(level_db):
        return quiet
    hushed = level_db < max(SILENCE_DBFS, float(np.percentile(level_db, 95)) - EDGE_SILENCE_BELOW_LOUD_DB)
    sounding = np.flatnonzero(~hushed)
    if not len(sounding):
        return quiet | hushed
    quiet[: sounding[0]] = True
    quiet[sounding[-1] + 1 :] = True
    return quiet


def silent_spans(
    level_db: np.ndarray, duration: float, rate: int = ANALYSIS_RATE, hop: int = HOP
) -> list[tuple[float, float]]:
    """(start, end) seconds of every stretch of at least MIN_SILENCE_S of silence (`quiet_frames`; level in dB
    per frame of `hop` samples, centred)."""
    quiet = np.concatenate([[False], quiet_frames(np.asarray(level_db)), [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    spans = []
    for first, last in zip(edges[::2], edges[1::2]):
        # A frame is centred on its hop: the span runs from the first quiet frame's centre to the last one's.
        start, end = first * hop / rate, min(duration, (last - 1) * hop / rate + hop / rate)
        if end - start >= MIN_SILENCE_S:
            spans.append((round(start, 4), round(end, 4)))
    return spans


def outside(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """Mask of `times` that lie in none of `spans`."""
    times = np.asarray(times, dtype=float)
    keep = np.ones(len(times), dtype=bool)
    for start, end in spans:
        keep &= ~((times >= start) & (times < end))
    return keep


def with_silence(chords: list[dict], spans: list[tuple[float, float]]) -> list[dict]:
    """Timed chords (each lasting until the next) with none inside a silent span and an N at its start, so no chord
    runs on into the silence; the first beat after it starts the next chord."""
    kept = [c for c, keep in zip(chords, outside([c["time"] for c in chords], spans)) if keep]
    silences = [{"time": start, "chord": "N", "confidence": 1.0, "bass": None} for start, _ in spans]
    return sorted(kept + silences, key=lambda c: c["time"])


TEMPOGRAM_FRAMES = 344  # librosa's tempo estimate: 8 s of autocorrelation at HOP
TEMPOGRAM_CHUNK = 10_000  # frames of the tempogram made at a time (about 4 minutes, 28 MB)


def song_tempo(pulse_strength: np.ndarray) -> float:
    """librosa's global tempo estimate (the mean tempogram weighted by its log-normal prior around 120 BPM),
    with the tempogram averaged a chunk of frames at a time: a whole song's tempogram is 2.7 MB a second."""
    import librosa

    half = TEMPOGRAM_FRAMES // 2 + 1
    frames = len(pulse_strength)
    total = np.zeros(TEMPOGRAM_FRAMES)
    for first in range(0, frames, TEMPOGRAM_CHUNK):
        last = min(frames, first + TEMPOGRAM_CHUNK)
        start, stop = max(0, first - half), min(frames, last + half)
        tempogram = librosa.feature.tempogram(
            onset_envelope=pulse_strength[start:stop], sr=ANALYSIS_RATE, hop_length=HOP, win_length=TEMPOGRAM_FRAMES
        )
        total += tempogram[:, first - start : last - start].sum(axis=1)
    mean = (total / max(1, frames))[:, None]
    return float(
        np.atleast_1d(librosa.feature.tempo(tg=mean, sr=ANALYSIS_RATE, hop_length=HOP, aggregate=None)).ravel()[0]
    )


def _dsp_beats(pulse_strength: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(beat times, beat frames, tempo, tempo confidence) from the noise-robust pulse envelope (`pulse_envelope`)."""
    import librosa

    if not pulse_strength.any():
        return np.zeros(0), np.zeros(0, dtype=int), 0.0, 0.0
    tempo = song_tempo(pulse_strength)
    _, beat_frames = librosa.beat.beat_track(onset_envelope=pulse_strength, sr=ANALYSIS_RATE, hop_length=HOP, bpm=tempo)
    beat_times = librosa.frames_to_time(beat_frames, sr=ANALYSIS_RATE, hop_length=HOP)
    # Pulse clarity: how much of the onset energy sits on the tracked beats.
    on_beat = pulse_strength[beat_frames].mean() if len(beat_frames) else 0.0
    return beat_times, beat_frames, tempo, float(np.clip(on_beat / (pulse_strength.mean() * 3 + 1e-9), 0.0, 1.0))


def _around(envelope: np.ndarray, frames: np.ndarray, width: int) -> np.ndarray:
    """The envelope's maximum within `width` frames of each frame."""
    return np.array([envelope[max(0, f - width) : f + width + 1].max(initial=0.0) for f in frames])

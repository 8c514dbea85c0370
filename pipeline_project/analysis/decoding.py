"""Decoders that turn the learned analysers' frame activations into beats, chords and keys.

- Beats: a bar-pointer style hidden Markov model (after Krebs, Böck & Widmer 2015, as in madmom's DBN): a
  state is (beat period in frames, position within the beat); the position advances one frame per frame,
  the period may change only at a beat, to a near period. The first position of a beat observes the beat
  activation a, every other position 1 - a (madmom widens the beat to a sixteenth of the period, which
  favours fast tempi wherever the activation is not near zero between beats). The prior over periods is the tempo distribution of the training renders (a
  histogram shipped with the model), not a fixed 120 BPM: slow pieces are not pulled to double time.
- Chords: a Viterbi path over beats of the frame log-probabilities pooled per beat (the frames near a beat's
  ends left out, where they hear the chords either side), where a change of chord costs a fixed penalty.
- Keys: the same over bars with a larger penalty, so a modulation must be heard for a while.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MIN_BPM, MAX_BPM = 40.0, 230.0
TEMPO_CHANGE_LAMBDA = 100.0  # transition weight exp(-lambda |p'/p - 1|): tempo changes are small and rare


def tempo_periods(fps: float) -> np.ndarray:
    """Every whole beat period in frames from MAX_BPM to MIN_BPM. Whole periods only, but all of them: a
    tempo between two of them is tracked by alternating the two, which costs a period change every beat, so
    a gap in the grid would make a tempo's double, where the grid is finer, look cheaper."""
    return np.arange(int(np.floor(60.0 * fps / MAX_BPM)), int(np.ceil(60.0 * fps / MIN_BPM)) + 1, dtype=np.int64)


def tempo_prior(periods: np.ndarray, fps: float, histogram_bpm: np.ndarray | None) -> np.ndarray:
    """Log prior over periods from a tempo histogram (counts per 1-BPM bin from MIN_BPM, smoothed), uniform
    when there is none."""
    if histogram_bpm is None or not np.sum(histogram_bpm):
        return np.full(len(periods), -np.log(len(periods)))
    bpm = 60.0 * fps / periods
    centres = MIN_BPM + np.arange(len(histogram_bpm)) + 0.5
    # Each period takes the histogram mass within 4 % of its tempo (the tolerance tempo accuracy is judged by).
    mass = np.array([histogram_bpm[np.abs(centres / b - 1) <= 0.04].sum() for b in bpm], dtype=np.float64)
    mass = mass + 0.05 * mass.max() + 1e-9  # no tempo is impossible
    return np.log(mass / mass.sum())


# The beat decoder keeps its back-pointers for this many frames at a time (4.7 MB at 128 periods) and the
# scores of every state at the start of each such stretch; the stretches' back-pointers are recomputed from
# those, last to first, while the path is retraced. Exact, at twice the forward work, and memory no longer
# grows with the song (a whole hour's back-pointers would be 180 MB).
BEAT_CHECKPOINT_FRAMES = 10_000


@lru_cache(maxsize=1)
def _compiled_beat_kernels():
    """The beat Viterbi's forward pass and retrace, compiled by numba (cached on disk; compiled with librosa's
    kernels after install)."""
    from numba import njit

    return njit(cache=True, nogil=True)(_beat_forward), njit(cache=True, nogil=True)(_beat_retrace)


def _beat_forward(log_beat, log_other, periods, offsets, log_transition, score, start, stop, back, keep):
    """Advance `score` (one value per state, in place) through frames start .. stop - 1. States are laid out
    period by period, position 0 (the beat) first. With `keep`, back[t - start, j] is the period the beat
    state of period j at frame t came from (within a period the position just advances)."""
    n_periods = periods.shape[0]
    new = np.empty_like(score)
    for t in range(start, stop):
        if t > 0:
            for j in range(n_periods):
                best, arg = -np.inf, 0
                for i in range(n_periods):
                    value = score[offsets[i + 1] - 1] + log_transition[i, j]
                    if value > best:
                        best, arg = value, i
                new[offsets[j]] = best
                if keep:
                    back[t - start, j] = arg
                for k in range(1, periods[j]):
                    new[offsets[j] + k] = score[offsets[j] + k - 1]
            score[:] = new
        for j in range(n_periods):
            score[offsets[j]] += log_beat[t]
            for k in range(1, periods[j]):
                score[offsets[j] + k] += log_other[t]


def _beat_retrace(periods, back, start, period, position, beats):
    """Walk the path back from (period, position) at the last frame of the stretch that starts at `start`,
    marking beats; returns the (period, position) at the frame before the stretch."""
    t = start + back.shape[0] - 1
    while t >= start:
        if position == 0:
            beats[t] = True
            if t > 0:
                period = back[t - start, period]
                position = periods[period] - 1
        else:
            position -= 1
        t -= 1
    return period, position


def _viterbi_beats(
    log_beat: np.ndarray,
    log_other: np.ndarray,
    periods: np.ndarray,
    log_prior: np.ndarray,
    log_transition: np.ndarray,
    checkpoint: int = BEAT_CHECKPOINT_FRAMES,
) -> np.ndarray:
    """Frames at which the best state path starts a beat (a boolean per frame)."""
    forward, retrace = _compiled_beat_kernels()
    frames = len(log_beat)
    offsets = np.concatenate([[0], np.cumsum(periods)]).astype(np.int64)
    score = np.concatenate([np.full(p, prior - np.log(p)) for p, prior in zip(periods, log_prior)])
    unused = np.zeros((1, len(periods)), dtype=np.int32)
    stretches = [(first, min(frames, first + checkpoint)) for first in range(0, frames, checkpoint)]
    saved = []
    for start, stop in stretches:  # forward: keep only the scores where each stretch starts
        saved.append(score.copy())
        forward(log_beat, log_other, periods, offsets, log_transition, score, start, stop, unused, False)
    state = int(np.argmax(score))
    period = int(np.searchsorted(offsets, state, side="right") - 1)
    position = state - int(offsets[period])
    beats = np.zeros(frames, dtype=np.bool_)
    for (start, stop), score in zip(reversed(stretches), reversed(saved)):  # backward, a stretch at a time
        back = np.zeros((stop - start, len(periods)), dtype=np.int32)
        forward(log_beat, log_other, periods, offsets, log_transition, score, start, stop, back, True)
        period, position = retrace(periods, back, start, period, position, beats)
    return beats


# The least a frame's downbeat activation counts for: between beats the network's downbeat output falls
# to 1e-4 and less, and an unbounded logarithm would let one such frame veto a beat on its own.
DOWNBEAT_EVIDENCE_FLOOR = 0.02


def _peak(activation: np.ndarray) -> np.ndarray:
    """Each frame's activation peak within a frame either side: integer periods drift against the true one by
    a fraction of a frame per beat, and a sharp peak missed by one frame would read as none."""
    return np.maximum(activation, np.maximum(np.roll(activation, 1), np.roll(activation, -1)))


def decode_beats(
    activation: np.ndarray,
    fps: float,
    histogram_bpm: np.ndarray | None = None,
    activation_prior: float = 0.3,
    downbeat: np.ndarray | None = None,
    downbeat_weight: float = 0.0,
    downbeat_level: float = 0.1,
) -> np.ndarray:
    """Beat times in seconds from a beat activation (probability per frame). `activation_prior` is the
    network's mean activation over all frames: a frame's evidence for a beat is its activation against that
    level (likelihood = posterior / prior), so a network that is unsure everywhere (under heavy noise) still
    gets beats where it is least unsure, instead of the decoder avoiding beats and settling on the slowest
    tempo.

    With a `downbeat` activation and a `downbeat_weight`, a beat also weighs the downbeat head's word: plus
    the weight times log(downbeat / `downbeat_level`). The downbeat head answers on every beat of the bar a
    little (0.1-0.4 where the bar's first beat is 0.5-0.7) and hardly at all between beats (about 0.001), while
    the beat head often fires half as strongly on the off-beats as on the beats: off-beats that a slow piece's
    eighth notes make look like beats cost a path at double tempo, and weak beats that noise hides still
    count for the right one: where the beat head leaves the metrical level open, the downbeat head settles it."""
    activation = np.clip(np.asarray(activation, dtype=np.float64), 1e-6, 1 - 1e-6)
    if len(activation) < 4:
        return np.zeros(0)
    periods = tempo_periods(fps)
    ratio = periods[None, :] / periods[:, None]
    log_transition = -TEMPO_CHANGE_LAMBDA * np.abs(ratio - 1.0)
    log_transition -= np.log(np.exp(log_transition).sum(axis=1, keepdims=True))
    log_beat = np.log(_peak(activation)) - np.log(activation_prior)
    if downbeat is not None and downbeat_weight:
        strong = np.maximum(_peak(np.asarray(downbeat, dtype=np.float64)), DOWNBEAT_EVIDENCE_FLOOR)
        log_beat = log_beat + downbeat_weight * (np.log(strong) - np.log(downbeat_level))
    log_other = np.log(1 - activation) - np.log(1 - activation_prior)
    beats = _viterbi_beats(log_beat, log_other, periods, tempo_prior(periods, fps, histogram_bpm), log_transition)
    return np.flatnonzero(beats).astype(np.float64) / fps


def trim_ring_out(beat_times: np.ndarray, activation: np.ndarray, fps: float, ratio: float) -> np.ndarray:
    """Beats without the trailing ones whose activation (peak within a frame either side) is below `ratio`
    times the median over all beats: the decoder keeps its pulse through a final chord's ring-out, where no
    note is struck and the network's activation is weak. (Leading beats stay: the network hears the first
    beat weakly for want of context, and the first chord is read from it.)"""
    if not ratio or len(beat_times) < 3:
        return beat_times
    at = np.round(np.asarray(beat_times) * fps).astype(int).clip(0, len(activation) - 1)
    peaks = np.array([activation[max(0, i - 1) : i + 2].max() for i in at])
    strong = np.flatnonzero(peaks >= ratio * np.median(peaks))
    return beat_times[: strong[-1] + 1] if len(strong) else beat_times


def viterbi_segments(log_probs: np.ndarray, change_penalty: float) -> np.ndarray:
    """Best class per step of (steps, classes) log-probabilities, where changing class costs `change_penalty`."""
    steps, classes = log_probs.shape
    if steps == 0:
        return np.zeros(0, dtype=np.int64)
    total = log_probs[0].copy()
    back = np.zeros((steps, classes), dtype=np.int64)
    for step in range(1, steps):
        best = int(np.argmax(total))
        move = total[best] - change_penalty
        back[step] = np.where(total >= move, np.arange(classes), best)
        total = np.maximum(total, move) + log_probs[step]
    path = np.zeros(steps, dtype=np.int64)
    path[-1] = int(np.argmax(total))
    for step in range(steps - 1, 0, -1):
        path[step - 1] = back[step, path[step]]
    return path


def pool_frames(
    log_probs: np.ndarray, fps: float, boundaries_s: np.ndarray, end_s: float, margin_s: float = 0.0
) -> np.ndarray:
    """(segments, classes) mean frame log-probability within each segment [boundary_i, boundary_i+1). A frame
    counts at the time its training target was read, the middle of its hop ((i + 0.5) / fps, as
    `frames.targets` reads them). With `margin_s`, only frames at least that far inside both ends of a
    segment count: a harmony frame hears 372 ms of sound, so next to a chord change it hears both chords. A
    segment left without frames takes the one nearest its middle."""
    edges = np.append(np.asarray(boundaries_s, dtype=np.float64), end_s)
    count = len(log_probs)
    if not count or len(edges) < 2:
        return np.zeros((len(edges) - 1, log_probs.shape[1]))
    first = np.clip(np.ceil((edges[:-1] + margin_s) * fps - 0.5), 0, count).astype(np.int64)
    last = np.clip(np.ceil((edges[1:] - margin_s) * fps - 0.5), 0, count).astype(np.int64)
    empty = last <= first
    middle = np.clip(np.floor((edges[:-1] + edges[1:]) / 2 * fps), 0, count - 1).astype(np.int64)
    first, last = np.where(empty, middle, first), np.where(empty, middle + 1, last)
    running = np.concatenate([np.zeros((1, log_probs.shape[1])), np.cumsum(log_probs, axis=0, dtype=np.float64)])
    return (running[last] - running[first]) / (last - first)[:, None]


def segment_changes(
    log_probs: np.ndarray, fps: float, boundaries_s: np.ndarray, end_s: float, margin_s: float
) -> np.ndarray:
    """How much the class distribution changes into each segment after the first: the total variation
    distance (0: the same, 1: nothing shared) between consecutive segments' distributions, each the mean
    frame log-probability within it (`pool_frames`) normalised to sum to one."""
    pooled = np.exp(pool_frames(log_probs, fps, boundaries_s, end_s, margin_s))
    pooled /= pooled.sum(axis=1, keepdims=True)
    return 0.5 * np.abs(np.diff(pooled, axis=0)).sum(axis=1)


def choose_meter(downbeat_at_beats: np.ndarray, candidates: tuple[int, ...] = (2, 3, 4, 5)) -> tuple[int, int, float]:
    """(beats per bar, phase of the first downbeat, confidence) maximizing the contrast of the downbeat
    activation on would-be downbeats against the other beats. A wrong bar length puts true downbeats among
    the 'other' beats, so the true length shows the largest contrast."""
    beats = len(downbeat_at_beats)
    if beats < 8:
        return 4, 0, 0.0
    best: dict[int, tuple[float, int]] = {}
    for bar in candidates:
        for phase in range(bar):
            on = np.zeros(beats, dtype=bool)
            on[phase::bar] = True
            contrast = float(downbeat_at_beats[on].mean() - downbeat_at_beats[~on].mean())
            if bar not in best or contrast > best[bar][0]:
                best[bar] = (contrast, phase)
    bar = max(best, key=lambda b: best[b][0])
    weights = np.exp(np.array([best[b][0] for b in best]) / 0.1)
    return bar, best[bar][1], float(weights[list(best).index(bar)] / weights.sum())

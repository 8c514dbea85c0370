"""A look-ahead peak limiter as a gain curve, vectorized so it costs little next to the audio it protects.

Returning the gain rather than the limited audio lets the renderer apply one curve to every stem, so the
stems still add up exactly to the limited mix.
"""

from __future__ import annotations

import numpy as np

MIX_CEILING_DB = -1.0


def limiter_gain(
    mix: np.ndarray,
    sample_rate: int,
    ceiling_db: float = MIX_CEILING_DB,
    lookahead_ms: float = 5.0,
    release_ms: float = 80.0,
) -> np.ndarray:
    """A look-ahead peak limiter's gain curve: never lets |mix * gain| exceed the ceiling, opens smoothly."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d
    from scipy.signal import lfilter

    ceiling = 10 ** (ceiling_db / 20)
    frames = mix.shape[1]
    # Work on 32-frame blocks: a block's peak stands for all its samples, which only errs on the safe side.
    block = 32
    padded = np.pad(np.max(np.abs(mix), axis=0), (0, (-frames) % block))
    peak = padded.reshape(-1, block).max(axis=1)
    if peak.max() <= ceiling:
        return np.ones(frames, dtype=np.float32)
    rate = sample_rate / block
    window = max(1, int(np.ceil(lookahead_ms / 1000 * rate)))
    needed = np.minimum(1.0, ceiling / np.maximum(maximum_filter1d(peak, 2 * window + 1), 1e-12))
    # Release: the gain recovers with a one-pole filter, but never above what a peak needs.
    alpha = np.exp(-1.0 / (release_ms / 1000 * rate))
    held = minimum_filter1d(needed, 2 * window + 1)
    smoothed = lfilter([1 - alpha], [1, -alpha], held - 1.0, zi=[0.0])[0] + 1.0
    gain = np.minimum(np.minimum(smoothed, needed), 1.0)
    # Back to samples: hold each block's gain (never above the block's own need), so the ceiling holds exactly.
    return np.repeat(gain.astype(np.float32), block)[:frames]


def limit(
    audio: np.ndarray, sample_rate: int, ceiling_db: float = MIX_CEILING_DB, release_ms: float = 80.0
) -> np.ndarray:
    """(channels, frames) audio whose peaks stay under the ceiling."""
    return (audio * limiter_gain(audio, sample_rate, ceiling_db, release_ms=release_ms)).astype(np.float32)

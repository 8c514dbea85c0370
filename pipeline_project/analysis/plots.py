"""A picture of a song's analysis for people: waveform, beats and sections on one time axis (PNG bytes)."""

from __future__ import annotations

import io

import numpy as np

SECTION_COLOURS = ("#8ecae6", "#ffb703", "#90be6d", "#f28482", "#cdb4db", "#ffd6a5")


def analysis_plot(peaks: np.ndarray, duration: float, analysis: dict, width_px: int = 1000, height_px: int = 260) -> bytes:
    """`peaks`: the mix's peak level in equal stretches of the song (`analysis.streaming.waveform_peaks`, two
    per pixel), `duration` in seconds."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    peaks = np.asarray(peaks, dtype=float)
    times = (np.arange(len(peaks)) + 0.5) * duration / max(1, len(peaks))

    figure, axis = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    for index, section in enumerate(analysis.get("sections", [])):
        colour = SECTION_COLOURS[(ord(section["label"][0]) - ord("A")) % len(SECTION_COLOURS)]
        axis.axvspan(section["start"], section["end"], color=colour, alpha=0.35, lw=0)
        axis.text(section["start"] + 0.2, 0.93, section["label"], fontsize=9, va="top", transform=axis.get_xaxis_transform())
    axis.fill_between(times, -peaks, peaks, color="#264653", lw=0)
    # One collection for every beat line: an hour has thousands of beats.
    axis.vlines(analysis.get("beat_times", []), 0, 1, transform=axis.get_xaxis_transform(), color="#e76f51", lw=0.5, alpha=0.6)
    axis.set_xlim(0, duration)
    axis.set_ylim(-1.05 * (peaks.max() or 1), 1.05 * (peaks.max() or 1))
    axis.set_yticks([])
    axis.set_xlabel("seconds")
    axis.set_title(f"{analysis['tempo_bpm']:.0f} BPM, {analysis['key_tonic']} {analysis['key_mode']}: beats (lines), sections (colours)",
                   fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()

"""A picture of a song's analysis for people: waveform, beats and sections on one time axis (PNG bytes)."""

from __future__ import annotations

import io

import numpy as np

SECTION_COLOURS = ("#8ecae6", "#ffb703", "#90be6d", "#f28482", "#cdb4db", "#ffd6a5")
# On a long song beats and section letters would cover the picture: beats are drawn only where they stand at
# least this many pixels apart, a section's letter only where the section is at least this wide.
MIN_BEAT_GAP_PX = 3.0
MIN_LABELLED_SECTION_PX = 14.0


def analysis_plot(
    peaks: np.ndarray, duration: float, analysis: dict, width_px: int = 1000, height_px: int = 260
) -> bytes:
    """`peaks`: the mix's peak level in equal stretches of the song (`analysis.streaming.waveform_peaks`, two
    per pixel), `duration` in seconds."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    peaks = np.asarray(peaks, dtype=float)
    times = (np.arange(len(peaks)) + 0.5) * duration / max(1, len(peaks))

    figure, axis = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    px_per_s = 0.9 * width_px / max(duration, 1e-9)  # the axis takes about 90 % of the width
    for section in analysis.get("sections", []):
        colour = SECTION_COLOURS[(ord(section["label"][0]) - ord("A")) % len(SECTION_COLOURS)]
        axis.axvspan(section["start"], section["end"], color=colour, alpha=0.35, lw=0)
        if (section["end"] - section["start"]) * px_per_s >= MIN_LABELLED_SECTION_PX:
            axis.text(
                section["start"] + 0.2,
                0.93,
                section["label"],
                fontsize=9,
                va="top",
                transform=axis.get_xaxis_transform(),
            )
    beats = np.asarray(analysis.get("beat_times", []), dtype=float)
    drawn = len(beats) < 2 or float(np.median(np.diff(beats))) * px_per_s >= MIN_BEAT_GAP_PX
    axis.fill_between(times, -peaks, peaks, color="#264653", lw=0)
    if drawn:  # one collection for every beat line
        axis.vlines(beats, 0, 1, transform=axis.get_xaxis_transform(), color="#e76f51", lw=0.5, alpha=0.6)
    axis.set_xlim(0, duration)
    axis.set_ylim(-1.05 * (peaks.max() or 1), 1.05 * (peaks.max() or 1))
    axis.set_yticks([])
    axis.set_xlabel("seconds")
    beat_note = "beats (lines)" if drawn else f"{len(beats)} beats (too dense to draw)"
    axis.set_title(
        f"{analysis['tempo_bpm']:.0f} BPM, {analysis['key_tonic']} {analysis['key_mode']}: {beat_note}, sections (colours)",
        fontsize=9,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()

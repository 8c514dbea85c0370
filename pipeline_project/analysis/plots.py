"""A picture of a song's analysis for people: waveform, beats and sections on one time axis (PNG bytes)."""

from __future__ import annotations

import io

import numpy as np

SECTION_COLOURS = ("#8ecae6", "#ffb703", "#90be6d", "#f28482", "#cdb4db", "#ffd6a5")


def analysis_plot(mix: np.ndarray, sample_rate: int, analysis: dict, width_px: int = 1000, height_px: int = 260) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    mono = mix.mean(axis=0) if mix.ndim == 2 else mix
    bins = min(len(mono), width_px * 2)
    usable = len(mono) // bins * bins
    blocks = np.abs(mono[:usable]).reshape(bins, -1)
    peaks, times = blocks.max(axis=1), (np.arange(bins) + 0.5) * (usable / bins) / sample_rate

    figure, axis = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    for index, section in enumerate(analysis.get("sections", [])):
        colour = SECTION_COLOURS[(ord(section["label"][0]) - ord("A")) % len(SECTION_COLOURS)]
        axis.axvspan(section["start"], section["end"], color=colour, alpha=0.35, lw=0)
        axis.text(section["start"] + 0.2, 0.93, section["label"], fontsize=9, va="top", transform=axis.get_xaxis_transform())
    axis.fill_between(times, -peaks, peaks, color="#264653", lw=0)
    for beat in analysis.get("beat_times", []):
        axis.axvline(beat, color="#e76f51", lw=0.5, alpha=0.6)
    axis.set_xlim(0, usable / sample_rate)
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

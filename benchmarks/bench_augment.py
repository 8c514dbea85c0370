"""Speed of the concert augmentation chain beside the same effects built from audiomentations.

Both sides process the same rendered 30 s stereo mix at 44.1 kHz with the same arena impulse response and
the same SNR; the peer reads the crowd noise from a file (how audiomentations works), while the project
builds it from the rendered corpus on every call. The peer chain is ApplyImpulseResponse, AddBackgroundNoise,
HighPassFilter, two PeakingFilters, LowPassFilter and Limiter, each with p=1, run on each channel because
AddBackgroundNoise takes mono audio only. Reported: CPU seconds (all
threads), x real time per core (audio seconds / CPU seconds) and the ratio. Targets: at least 2x
audiomentations and at least 150x real time per core.

    make bench-setup
    .venv/bin/python benchmarks/bench_augment.py [--seconds 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from pipeline_project.augmentation.chains import NoisePool, apply_chain, noise_texture, sample_chain  # noqa: E402
from pipeline_project.augmentation.rooms import impulse_response  # noqa: E402
from pipeline_project.synthesis.examples import all_sources, example_specs, render_example  # noqa: E402
from pipeline_project.synthesis.render import available_soundfonts, soundfont_presets  # noqa: E402

RATE = 44_100


def corpus_audio(seconds: float) -> tuple[np.ndarray, NoisePool]:
    """Rendered examples end to end (the test audio) and their vocal stems (the crowd's voices)."""
    catalog = available_soundfonts()
    presets = soundfont_presets(catalog)
    mixes, clips = [], {}
    for spec in example_specs(all_sources(), seed=77, renderings_per_source=1, score_bars=4, groove_bars=8):
        example = render_example(spec, catalog, presets)
        mixes.append(example.audio.mix)
        if np.any(example.audio.stems["vocals"]):
            clips[spec.example_key] = example.audio.stems["vocals"]
        if sum(m.shape[1] for m in mixes) >= seconds * RATE and len(clips) >= 10:
            break
    return np.concatenate(mixes, axis=1)[:, : int(seconds * RATE)], NoisePool(clips)


def cpu_seconds(function, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import audiomentations as am

    audio, pool = corpus_audio(args.seconds)
    record = sample_chain(["concert"], seed=2026, pool_ids=pool.ids())
    steps = {s["name"]: s for s in record["steps"]}
    ir = impulse_response(steps["room"]["room"], RATE)  # built once, as the peer's IR file is
    apply_chain(audio, RATE, record, pool)  # warm caches and imports on both sides
    with tempfile.TemporaryDirectory() as tmp:
        ir_path, noise_path = Path(tmp) / "arena_ir.wav", Path(tmp) / "crowd.wav"
        soundfile.write(ir_path, ir.mean(axis=0), RATE, subtype="FLOAT")
        soundfile.write(
            noise_path,
            noise_texture(steps["noise"], audio.shape, RATE, pool).mean(axis=0).astype(np.float32),
            RATE,
            subtype="FLOAT",
        )
        eq = steps["eq"]
        (f1, g1, q1), (f2, g2, q2) = eq["peaks"]
        snr = steps["noise"]["snr_db"]
        peer = am.Compose(
            [
                am.ApplyImpulseResponse(ir_path, p=1.0),
                am.AddBackgroundNoise(noise_path, min_snr_db=snr, max_snr_db=snr, p=1.0),
                am.HighPassFilter(eq["highpass_hz"], eq["highpass_hz"], 12, 12, p=1.0),
                am.PeakingFilter(f1, f1, g1, g1, q1, q1, p=1.0),
                am.PeakingFilter(f2, f2, g2, g2, q2, q2, p=1.0),
                am.LowPassFilter(eq["lowpass_hz"], eq["lowpass_hz"], 12, 12, p=1.0),
                am.Limiter(-1.0, -1.0, 0.001, 0.001, 0.1, 0.1, threshold_mode="absolute", p=1.0),
            ]
        )

        def run_peer():  # AddBackgroundNoise takes mono only: each channel goes through the chain
            return np.stack([peer(samples=np.ascontiguousarray(channel), sample_rate=RATE) for channel in audio])

        run_peer()
        ours = cpu_seconds(lambda: apply_chain(audio, RATE, record, pool), args.repeats)
        theirs = cpu_seconds(run_peer, args.repeats)
    seconds = audio.shape[1] / RATE
    print(f"concert chain on {seconds:.0f} s of stereo 44.1 kHz audio, best CPU time of {args.repeats}")
    print(f"{'chain':<16} {'CPU s':>8} {'x real time per core':>22}")
    print(f"{'project':<16} {ours:>8.3f} {seconds / ours:>22.0f}")
    print(f"{'audiomentations':<16} {theirs:>8.3f} {seconds / theirs:>22.0f}")
    ratio = theirs / ours
    verdict = "PASS" if ratio >= 2 and seconds / ours >= 150 else "FAIL"
    print(
        f"speed ratio project / audiomentations: {ratio:.2f}x (targets >= 2x and >= 150x real time per core): {verdict}"
    )


if __name__ == "__main__":
    main()

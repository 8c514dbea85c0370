"""The augmentation pyramid: named presets that combine into one chain of pedalboard steps.

`sample_chain(presets, seed)` draws every parameter from the seed and returns a plain record (the preset
names and an ordered list of steps with their parameters and sub-seeds). `apply_chain(audio, rate,
record)` rebuilds exactly the same samples from that record alone, and reports how the chain moved time
and pitch so the labels can follow (`time_scale`, `tuning_cents`).

Presets:
  stretch     time-stretch by up to +-2 % and pitch shift by up to +-20 cents (labels move to match)
  room        a simulated room from small room to arena (RT60 about 0.2-2.5 s)
  noise       white, pink, brown, babble or crowd noise at 0-20 dB SNR
  mic         microphone colouring: EQ, high- and low-pass
  phone       a phone: 300-3400 Hz band, 8 kHz sampling, a little saturation
  dynamics    compression and limiting
  distortion  hard clipping or soft (tanh) saturation
  codec       MP3 at a low bitrate
  concert     PA-style EQ on the music, an arena, crowd noise at an SNR from {-10, -5, 0, +5, +10} dB, limiter
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline_project.audio.dynamics import limit
from pipeline_project.augmentation.rooms import ROOM_TYPES, impulse_response, reverberate, sample_room

NOISE_KINDS = ("white", "pink", "brown", "babble", "crowd")
SNR_CHOICES_DB = (0.0, 5.0, 10.0, 20.0)
CONCERT_SNRS_DB = (-10.0, -5.0, 0.0, 5.0, 10.0)
PA_DIRECTIVITY_Q = (5.0, 15.0)
PRESETS = ("stretch", "room", "noise", "mic", "phone", "dynamics", "distortion", "codec", "concert")
# The pyramid's named combinations: what `augmented_examples` draws from by default.
DEFAULT_COMBINATIONS = (
    ("room",),
    ("noise",),
    ("mic", "dynamics"),
    ("room", "noise", "mic", "dynamics"),
    ("phone",),
    ("room", "distortion", "codec"),
    ("stretch", "room", "noise"),
    ("concert",),
    ("concert", "phone", "codec"),
    ("stretch", "concert"),
)
MAX_STRETCH = 0.02
MAX_SHIFT_CENTS = 20.0
BABBLE_VOICES = 6
CROWD_VOICES = 10
CROWD_DECIMATION = 4


class NoisePool:
    """Audio clips that babble and crowd noise are made of (rendered corpus audio), by id, at the chain's rate."""

    def __init__(self, clips: dict[str, np.ndarray] | None = None, sample_rate: int = 44_100):
        self.clips = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (clips or {}).items()}
        self.sample_rate = sample_rate
        self._decimated: dict[tuple[str, int], np.ndarray] = {}

    def ids(self) -> list[str]:
        return sorted(self.clips)

    def get(self, clip_id: str, decimation: int = 1) -> np.ndarray:
        if clip_id not in self.clips:
            raise KeyError(
                f"noise clip {clip_id!r} is not in the pool; a babble or crowd record needs the same pool to rebuild"
            )
        if decimation == 1:
            return self.clips[clip_id]
        if (clip_id, decimation) not in self._decimated:
            import soxr

            clip = self.clips[clip_id]
            self._decimated[clip_id, decimation] = np.ascontiguousarray(
                soxr.resample(clip.T, self.sample_rate, self.sample_rate / decimation, quality="MQ").T, dtype=np.float32
            )
        return self._decimated[clip_id, decimation]


@dataclass
class Augmented:
    audio: np.ndarray  # (channels, frames) float32
    time_scale: float  # label times are divided by this
    tuning_cents: float  # pitch moved by this many cents


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _noise_step(rng: np.random.Generator, kind: str, snr_db: float, pool_ids: list[str]) -> dict:
    step = {"name": "noise", "kind": kind, "snr_db": float(snr_db), "noise_seed": int(rng.integers(0, 2**31))}
    if kind in ("babble", "crowd"):
        if not pool_ids:
            raise ValueError(f"{kind} noise needs a pool of rendered clips")
        count = BABBLE_VOICES if kind == "babble" else CROWD_VOICES
        chosen = rng.choice(pool_ids, size=count, replace=len(pool_ids) < count)
        step["clips"] = [[str(c), _r(rng.uniform(0, 1), 4), _r(rng.uniform(0.5, 1.0))] for c in chosen]
    return step


def sample_chain(
    presets: list[str] | tuple[str, ...], seed: int, pool_ids: list[str] | None = None, snr_db: float | None = None
) -> dict:
    """One chain combining the named presets, every parameter drawn from `seed`; `snr_db`, when given, replaces
    the drawn SNR of the noise step (every other parameter stays what `seed` draws)."""
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown augmentation preset(s) {unknown}; choose from {list(PRESETS)}")
    rng = np.random.default_rng(seed)
    pool_ids = pool_ids or []
    wanted = set(presets)
    steps: list[dict] = []
    if "stretch" in wanted:
        steps.append(
            {
                "name": "time_stretch",
                "rate": _r(1 + rng.uniform(-MAX_STRETCH, MAX_STRETCH), 4),
                "cents": _r(rng.uniform(-MAX_SHIFT_CENTS, MAX_SHIFT_CENTS), 2),
            }
        )
    if "concert" in wanted:
        # The PA colours the music before the arena does; the crowd is heard directly, without the PA.
        steps.append(
            {
                "name": "eq",
                "preset": "pa",
                "highpass_hz": _r(rng.uniform(60, 100), 1),
                "peaks": [
                    [_r(rng.uniform(80, 140), 1), _r(rng.uniform(2, 6), 2), 0.8],
                    [_r(rng.uniform(2500, 4500), 1), _r(rng.uniform(1, 5), 2), 1.0],
                ],
                "lowpass_hz": _r(rng.uniform(12000, 16000), 1),
            }
        )
        # Line arrays aim the sound at the audience: a directivity factor of 5-15 (7-12 dB) keeps the music
        # intelligible far beyond the arena's critical distance, where an omnidirectional source would not.
        arena = sample_room("arena", rng) | {"directivity_q": _r(rng.uniform(*PA_DIRECTIVITY_Q), 2)}
        steps.append({"name": "room", "room": arena})
        steps.append(_noise_step(rng, "crowd" if pool_ids else "pink", float(rng.choice(CONCERT_SNRS_DB)), pool_ids))
    elif "room" in wanted:
        steps.append({"name": "room", "room": sample_room(str(rng.choice(list(ROOM_TYPES))), rng)})
    if "noise" in wanted and "concert" not in wanted:
        kinds = [k for k in NOISE_KINDS if pool_ids or k not in ("babble", "crowd")]
        steps.append(_noise_step(rng, str(rng.choice(kinds)), float(rng.choice(SNR_CHOICES_DB)), pool_ids))
    if "phone" in wanted:
        steps.append(
            {
                "name": "phone",
                "low_hz": _r(rng.uniform(250, 400), 1),
                "high_hz": _r(rng.uniform(3200, 3600), 1),
                "drive_db": _r(rng.uniform(2, 8), 2),
            }
        )
    elif "mic" in wanted:
        steps.append(
            {
                "name": "eq",
                "preset": "mic",
                "highpass_hz": _r(rng.uniform(40, 180), 1),
                "peaks": [[_r(rng.uniform(600, 5000), 1), _r(rng.uniform(-6, 6), 2), _r(rng.uniform(0.5, 2.0), 2)]],
                "lowpass_hz": _r(rng.uniform(7000, 18000), 1),
            }
        )
    if "distortion" in wanted:
        if rng.uniform() < 0.5:
            steps.append({"name": "clipping", "threshold_db": _r(rng.uniform(-12, -3), 2)})
        else:
            steps.append({"name": "saturation", "drive_db": _r(rng.uniform(6, 20), 2)})
    if "dynamics" in wanted:
        steps.append(
            {
                "name": "compressor",
                "threshold_db": _r(rng.uniform(-28, -10), 2),
                "ratio": _r(rng.uniform(2, 8), 2),
                "attack_ms": _r(rng.uniform(1, 20), 2),
                "release_ms": _r(rng.uniform(50, 300), 1),
            }
        )
    if "codec" in wanted:
        steps.append({"name": "mp3", "vbr_quality": _r(rng.uniform(6.5, 9.5), 2)})
    steps.append({"name": "limiter", "threshold_db": -1.0, "release_ms": 100.0})
    if snr_db is not None:
        for step in steps:
            if step["name"] == "noise":
                step["snr_db"] = float(snr_db)
    return {"seed": int(seed), "presets": list(presets), "steps": steps}


# Pinking filter (Julius O. Smith's -3 dB/octave approximation) and a leaky integrator for brown noise:
# IIR filtering of white noise costs one pass, where spectral shaping needs two FFTs of the whole signal.
PINK_FILTER = ([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1.0, -2.494956002, 2.017265875, -0.522189400])
BROWN_FILTER = ([1.0], [1.0, -0.995])


def coloured_noise(colour: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Unit-variance white, pink or brown noise of (channels, frames), float32."""
    from scipy.signal import lfilter

    white = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    if colour == "white":
        return white
    b, a = {"pink": PINK_FILTER, "brown": BROWN_FILTER}[colour]
    shaped = lfilter(np.float32(b), np.float32(a), white, axis=1).astype(np.float32)
    return shaped / np.float32(shaped.std() + 1e-12)


def _mixed_clips(step: dict, channels: int, frames: int, pool: NoisePool, decimation: int) -> np.ndarray:
    """The step's clips looped from their recorded positions, scaled and summed; at 1/decimation of the rate."""
    total = np.zeros((channels, frames), dtype=np.float32)
    for clip_id, position, gain in step["clips"]:
        clip = pool.get(clip_id, decimation)
        clip = np.broadcast_to(clip, (channels, clip.shape[-1])) if clip.shape[0] != channels else clip
        length = clip.shape[1]
        source, written = int(position * max(1, length)) % length, 0
        while written < frames:
            count = min(frames - written, length - source)
            total[:, written : written + count] += np.float32(gain) * clip[:, source : source + count]
            written, source = written + count, 0
    return total


def noise_texture(step: dict, shape: tuple[int, int], sample_rate: int, pool: NoisePool) -> np.ndarray:
    """Babble: several voices from the pool at recorded offsets. Crowd: more of them, muffled (built at a
    quarter of the rate, so nothing above 5.5 kHz), slowly swelling like an audience."""
    import soxr

    channels, frames = shape
    if step["kind"] == "babble":
        return _mixed_clips(step, channels, frames, pool, 1)
    low_frames = -(-frames // CROWD_DECIMATION)
    crowd = _mixed_clips(step, channels, low_frames, pool, CROWD_DECIMATION)
    rng = np.random.default_rng(step["noise_seed"])
    t = np.arange(low_frames, dtype=np.float32) * (CROWD_DECIMATION / sample_rate)
    crowd *= (1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)
    low_rate = sample_rate / CROWD_DECIMATION
    up = soxr.resample(np.ascontiguousarray(crowd.T), low_rate, sample_rate, quality="MQ").T
    out = np.zeros(shape, dtype=np.float32)
    out[:, : min(frames, up.shape[1])] = up[:, :frames]
    return out


def add_noise(audio: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """audio + noise scaled so that mean signal power over mean noise power is `snr_db`."""
    signal_power = float(np.vdot(audio, audio).real) / audio.size + 1e-20
    noise_power = float(np.vdot(noise, noise).real) / noise.size + 1e-20
    scale = np.float32(np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10))))
    return (audio + noise * scale).astype(np.float32)


def _board(step: dict, sample_rate: int):
    import pedalboard as pb

    name = step["name"]
    if name == "eq":
        return [
            pb.HighpassFilter(step["highpass_hz"]),
            *[pb.PeakFilter(f, g, q) for f, g, q in step["peaks"]],
            pb.LowpassFilter(step["lowpass_hz"]),
        ]
    if name == "phone":
        return [
            pb.HighpassFilter(step["low_hz"]),
            pb.LowpassFilter(step["high_hz"]),
            pb.Resample(8000),
            pb.Distortion(step["drive_db"]),
            pb.Gain(-step["drive_db"] / 2),
        ]
    if name == "clipping":
        return [pb.Clipping(step["threshold_db"]), pb.Gain(-step["threshold_db"])]
    if name == "saturation":
        return [pb.Distortion(step["drive_db"]), pb.Gain(-step["drive_db"] / 2)]
    if name == "compressor":
        return [pb.Compressor(step["threshold_db"], step["ratio"], step["attack_ms"], step["release_ms"])]
    if name == "mp3":
        return [pb.MP3Compressor(step["vbr_quality"])]
    raise ValueError(f"unknown augmentation step {name!r}")


STRETCH_HOP = 256


def stretch_and_shift(audio: np.ndarray, sample_rate: int, rate: float, cents: float) -> tuple[np.ndarray, float]:
    """Play `audio` about `rate` times faster and `cents` higher; returns the audio and the exact rate achieved.

    Rubber Band (via pedalboard) moves audio in whole hops of 256 samples: it slows down by k/256 and speeds
    up by 256/k exactly, while any other ratio drifts by up to 0.2 % and labels would slip by tens of ms over
    a minute. So the tempo ratio is rounded to the nearest such value. The pitch moves by resampling (soxr),
    which is exact in time: resampling by q speeds up by q and raises by 1200 log2(q) cents, so Rubber Band
    is asked for the rest of the tempo change, at unchanged pitch.
    """
    import pedalboard as pb
    import soxr

    pitch_ratio = 2 ** (cents / 1200)
    wanted = rate / pitch_ratio
    stretch = (
        STRETCH_HOP / max(1, round(STRETCH_HOP / wanted))
        if wanted >= 1
        else max(1, round(STRETCH_HOP * wanted)) / STRETCH_HOP
    )
    out = (
        audio
        if stretch == 1.0
        else pb.time_stretch(
            np.ascontiguousarray(audio), sample_rate, stretch_factor=stretch, pitch_shift_in_semitones=0.0
        )
    )
    if cents:
        out = soxr.resample(
            np.ascontiguousarray(out.T, dtype=np.float64), sample_rate * pitch_ratio, sample_rate, quality="VHQ"
        ).T.astype(np.float32)
    return np.ascontiguousarray(out, dtype=np.float32), stretch * pitch_ratio


def apply_chain(audio: np.ndarray, sample_rate: int, record: dict, pool: NoisePool | None = None) -> Augmented:
    """Apply a recorded chain to (channels, frames) audio; the same record always gives the same samples.
    Consecutive pedalboard effects run as one Pedalboard, so the audio is walked once per group."""
    import pedalboard as pb

    out = np.ascontiguousarray(audio, dtype=np.float32)
    pool = pool or NoisePool()
    time_scale, cents = 1.0, 0.0
    pending: list = []

    def flush(buffer: np.ndarray) -> np.ndarray:
        if not pending:
            return buffer
        processed = pb.Pedalboard(list(pending))(buffer, sample_rate)
        pending.clear()
        return processed

    steps = record["steps"]
    for index, step in enumerate(steps):
        name = step["name"]
        if name == "eq" and index + 1 < len(steps) and steps[index + 1]["name"] == "room":
            continue  # folded into the room's impulse response below
        if name == "time_stretch":
            out = flush(out)
            out, achieved = stretch_and_shift(out, sample_rate, step["rate"], step["cents"])
            time_scale *= achieved
            cents += step["cents"]
        elif name == "room":
            out = flush(out)
            ir = impulse_response(step["room"], sample_rate)
            if index and steps[index - 1]["name"] == "eq":
                # Filters are linear and time-invariant: EQ then room equals one convolution with the
                # EQ'd impulse response, which saves a pass over the audio.
                ir = pb.Pedalboard(_board(steps[index - 1], sample_rate))(ir, sample_rate)
            out = reverberate(out, ir, sample_rate)
        elif name == "noise":
            out = flush(out)
            noise = (
                noise_texture(step, out.shape, sample_rate, pool)
                if step["kind"] in ("babble", "crowd")
                else coloured_noise(step["kind"], out.shape, step["noise_seed"])
            )
            out = add_noise(out, step["snr_db"], noise)
        elif name == "limiter":
            out = limit(flush(out), sample_rate, step["threshold_db"], step["release_ms"])
        else:
            pending.extend(_board(step, sample_rate))
    out = flush(out)
    return Augmented(np.ascontiguousarray(out, dtype=np.float32), time_scale, cents)


def describe_step(step: dict) -> str:
    """A chain step in a few words, for tables: "room hall RT60 1.2 s", "crowd noise +5 dB SNR"."""
    name = step["name"]
    if name == "room":
        return f"room {step['room']['room_type']} RT60 {step['room']['rt60_s']} s"
    if name == "noise":
        return f"{step['kind']} noise {step['snr_db']:+.0f} dB SNR"
    if name == "time_stretch":
        return f"stretch x{step['rate']} {step['cents']:+.1f} cents"
    details = ", ".join(
        f"{k} {v}" for k, v in step.items() if k not in ("name", "peaks") and not isinstance(v, (list, dict))
    )
    return f"{name} ({details})" if details else name

"""Augmentation chains on pedalboard: room reverb, noise at a target SNR, microphone EQ, compression.

`sample_chain(seed)` draws every parameter from one seed and returns a plain record (a list of steps with
their parameters). `apply_chain(audio, rate, record)` rebuilds the exact same audio from that record alone:
the room impulse response and the noise are generated from seeds stored in the record.
"""

from __future__ import annotations

import numpy as np

NOISE_COLOURS = ("white", "pink", "brown")
SNR_CHOICES_DB = (0.0, 5.0, 10.0, 20.0)


def room_impulse_response(rt60_s: float, sample_rate: int, seed: int, predelay_ms: float = 8.0) -> np.ndarray:
    """A stereo diffuse-field impulse response: decorrelated noise decaying 60 dB in rt60_s, after a direct path."""
    rng = np.random.default_rng(seed)
    length = int(sample_rate * min(3.0, rt60_s * 1.2))
    t = np.arange(length) / sample_rate
    decay = np.exp(-6.907755 * t / rt60_s)  # ln(1000): 60 dB of amplitude decay at rt60
    tail = rng.standard_normal((2, length)) * decay
    predelay = int(predelay_ms / 1000 * sample_rate)
    tail[:, :predelay] = 0.0
    tail[:, 0] = 1.0 / 0.35  # direct sound, louder than any tail sample
    tail /= np.sqrt((tail**2).sum(axis=1, keepdims=True))
    return tail.astype(np.float32)


def coloured_noise(colour: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(shape)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white, axis=1)
    freqs = np.fft.rfftfreq(shape[1])
    freqs[0] = freqs[1]
    exponent = {"pink": 0.5, "brown": 1.0}[colour]
    shaped = np.fft.irfft(spectrum / freqs**exponent, n=shape[1], axis=1)
    return shaped / (shaped.std() + 1e-12)


def add_noise(audio: np.ndarray, snr_db: float, colour: str, seed: int) -> np.ndarray:
    noise = coloured_noise(colour, audio.shape, seed)
    signal_power = float(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
    noise_power = float(np.mean(noise**2)) + 1e-12
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (audio + noise * scale).astype(np.float32)


def sample_chain(seed: int) -> dict:
    """Draw one chain's parameters. Ranges stay musical: small-to-large rooms, moderate EQ and compression."""
    rng = np.random.default_rng(seed)
    return {
        "seed": seed,
        "steps": [
            {"name": "room_reverb", "rt60_s": round(float(rng.uniform(0.2, 1.2)), 3), "wet": round(float(rng.uniform(0.15, 0.45)), 3),
             "ir_seed": int(rng.integers(0, 2**31))},
            {"name": "noise", "snr_db": float(rng.choice(SNR_CHOICES_DB)), "colour": str(rng.choice(NOISE_COLOURS)),
             "noise_seed": int(rng.integers(0, 2**31))},
            {"name": "mic_eq", "highpass_hz": round(float(rng.uniform(40, 180)), 1), "peak_hz": round(float(rng.uniform(600, 4000)), 1),
             "peak_gain_db": round(float(rng.uniform(-6, 6)), 2), "peak_q": round(float(rng.uniform(0.5, 2.0)), 2),
             "lowpass_hz": round(float(rng.uniform(7000, 16000)), 1)},
            {"name": "compressor", "threshold_db": round(float(rng.uniform(-24, -10)), 2), "ratio": round(float(rng.uniform(2, 6)), 2),
             "attack_ms": round(float(rng.uniform(2, 20)), 2), "release_ms": round(float(rng.uniform(60, 250)), 1)},
            {"name": "limiter", "threshold_db": -1.0},
        ],
    }


def _step(audio: np.ndarray, sample_rate: int, step: dict) -> np.ndarray:
    import pedalboard

    name = step["name"]
    if name == "room_reverb":
        ir = room_impulse_response(step["rt60_s"], sample_rate, step["ir_seed"])
        board = pedalboard.Pedalboard([pedalboard.Convolution(ir, step["wet"], sample_rate)])
    elif name == "noise":
        return add_noise(audio, step["snr_db"], step["colour"], step["noise_seed"])
    elif name == "mic_eq":
        board = pedalboard.Pedalboard([
            pedalboard.HighpassFilter(step["highpass_hz"]),
            pedalboard.PeakFilter(step["peak_hz"], step["peak_gain_db"], step["peak_q"]),
            pedalboard.LowpassFilter(step["lowpass_hz"]),
        ])
    elif name == "compressor":
        board = pedalboard.Pedalboard([pedalboard.Compressor(step["threshold_db"], step["ratio"], step["attack_ms"], step["release_ms"])])
    elif name == "limiter":
        board = pedalboard.Pedalboard([pedalboard.Limiter(step["threshold_db"])])
    else:
        raise ValueError(f"unknown augmentation step {name!r}")
    return board(np.ascontiguousarray(audio, dtype=np.float32), sample_rate)


def apply_chain(audio: np.ndarray, sample_rate: int, record: dict) -> np.ndarray:
    """Apply a recorded chain to (channels, frames) audio; the same record always gives the same samples."""
    out = np.ascontiguousarray(audio, dtype=np.float32)
    for step in record["steps"]:
        out = _step(out, sample_rate, step)
    return out.astype(np.float32)

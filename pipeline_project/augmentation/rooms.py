"""Room impulse responses simulated with pyroomacoustics, from a small room to an arena.

The image-source method gives the direct sound and early reflections exactly; its order is capped to keep
big rooms cheap, so past the mixing time a seeded diffuse tail decaying at the room's target RT60 takes
over. Both parts are deterministic, so a recorded room always gives the same impulse response.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

# name: (length, width, height ranges in metres, RT60 range in seconds)
ROOM_TYPES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "small_room": ((3.0, 5.0), (2.5, 4.0), (2.4, 3.0), (0.2, 0.45)),
    "studio": ((6.0, 10.0), (5.0, 8.0), (3.0, 4.5), (0.35, 0.7)),
    "club": ((12.0, 20.0), (10.0, 16.0), (4.0, 7.0), (0.6, 1.2)),
    "hall": ((25.0, 40.0), (18.0, 28.0), (10.0, 16.0), (1.2, 2.0)),
    "arena": ((60.0, 100.0), (45.0, 75.0), (18.0, 30.0), (1.8, 2.5)),
}
MAX_IMAGE_ORDER = 10
MAX_IR_SECONDS = 3.0
MIC_SPACING_M = 0.3
TAIL_BRIGHTNESS_HZ = 4000.0


def sample_room(room_type: str, rng: np.random.Generator) -> dict:
    """A room of that type: dimensions, RT60, source and a spaced stereo microphone pair, and the tail seed.
    The source is omnidirectional; a record may add `directivity_q` (see `impulse_response`)."""
    (l0, l1), (w0, w1), (h0, h1), (r0, r1) = ROOM_TYPES[room_type]
    dims = [
        round(float(rng.uniform(l0, l1)), 2),
        round(float(rng.uniform(w0, w1)), 2),
        round(float(rng.uniform(h0, h1)), 2),
    ]
    source = [
        round(dims[0] * float(rng.uniform(0.15, 0.35)), 2),
        round(dims[1] * float(rng.uniform(0.35, 0.65)), 2),
        min(1.8, dims[2] / 2),
    ]
    listener = [
        round(dims[0] * float(rng.uniform(0.5, 0.85)), 2),
        round(dims[1] * float(rng.uniform(0.3, 0.7)), 2),
        min(1.6, dims[2] / 2),
    ]
    return {
        "room_type": room_type,
        "dims_m": dims,
        "rt60_s": round(float(rng.uniform(r0, r1)), 3),
        "source_m": source,
        "listener_m": listener,
        "tail_seed": int(rng.integers(0, 2**31)),
    }


def impulse_response(room: dict, sample_rate: int) -> np.ndarray:
    """(2, taps) float32 impulse response of a recorded room. The direct sound is at sample 0 with gain 1,
    so convolving adds reflections and reverberation but no delay: note and beat labels stay aligned."""
    return _impulse_response(json.dumps(room, sort_keys=True), sample_rate).copy()


@lru_cache(maxsize=32)
def _impulse_response(room_json: str, sample_rate: int) -> np.ndarray:
    import pyroomacoustics as pra
    from scipy.signal import butter, sosfilt

    room = json.loads(room_json)
    dims, rt60 = room["dims_m"], room["rt60_s"]
    absorption, order = pra.inverse_sabine(rt60, dims)
    shoebox = pra.ShoeBox(
        dims,
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=min(order, MAX_IMAGE_ORDER),
        air_absorption=True,
    )
    shoebox.add_source(room["source_m"])
    x, y, z = room["listener_m"]
    shoebox.add_microphone_array(np.array([[x - MIC_SPACING_M / 2, x + MIC_SPACING_M / 2], [y, y], [z, z]]))
    shoebox.compute_rir()
    taps = int(min(MAX_IR_SECONDS, rt60 * 1.1) * sample_rate)
    early = np.zeros((2, taps))
    for channel in range(2):
        rir = np.asarray(shoebox.rir[channel][0], dtype=np.float64)[:taps]
        early[channel, : len(rir)] = rir
    direct = int(np.argmax(np.abs(early).max(axis=0)))
    # Diffuse tail from the mixing time on. Its energy follows the classical diffuse-field relation
    # (reverberant / direct = 16 pi r^2 / A, with Sabine's absorption area A = 0.161 V / RT60): the image
    # method alone, capped in order, would leave a big hall far too dry.
    volume = float(np.prod(dims))
    distance = float(np.linalg.norm(np.subtract(room["source_m"], room["listener_m"])))
    absorption_area = 0.161 * volume / rt60
    mixing = direct + int(min(0.08, 0.002 * np.sqrt(volume) + 0.01) * sample_rate)
    rng = np.random.default_rng(room["tail_seed"])
    t = np.arange(taps) / sample_rate
    fade = np.clip((np.arange(taps) - mixing) / (0.01 * sample_rate), 0.0, 1.0)
    # Air and walls absorb high frequencies first, so the diffuse tail is darker than white noise.
    tail = sosfilt(butter(2, TAIL_BRIGHTNESS_HZ, fs=sample_rate, output="sos"), rng.standard_normal((2, taps)), axis=1)
    tail *= np.exp(-6.907755 * t / rt60) * fade
    around_direct = slice(max(0, direct - int(0.002 * sample_rate)), direct + int(0.002 * sample_rate))
    direct_energy = float(np.sum(early[:, around_direct] ** 2)) / 2
    target = direct_energy * 16 * np.pi * distance**2 / absorption_area
    tail *= np.sqrt(target / (float(np.sum(tail**2)) / 2 + 1e-20))
    ir = (early * (1 - fade) + tail)[:, direct:]  # the direct sound at time 0 keeps labels aligned
    # A directional source (a PA's line array) sends a factor Q more of its power toward the listener than
    # an omnidirectional one: relative to the direct sound, reflections and reverberation drop by sqrt(Q).
    ir[:, around_direct.stop - direct :] /= np.sqrt(room.get("directivity_q", 1.0))
    ir /= np.abs(ir[:, 0]).max() + 1e-12
    return ir.astype(np.float32)


SHORT_IR_TAPS = 32_768  # responses up to 0.74 s (small rooms, studios) are convolved exactly
TAIL_DECIMATION = 4  # longer ones: everything after the direct sound at a quarter of the rate


def reverberate(audio: np.ndarray, ir: np.ndarray, sample_rate: int) -> np.ndarray:
    """(channels, frames) audio convolved with a (channels, taps) impulse response, same length out.

    Short responses are convolved exactly. Long ones (clubs, halls, arenas) are split: the direct sound
    (tap 0) at full rate, the reflections and the tail on a signal decimated by 4 (soxr, linear phase, so
    nothing moves in time). Reflections then carry nothing above 5.5 kHz, much as air and walls absorb it
    in big rooms, and the convolution costs a fraction of a full-rate one: that is what lets the concert
    chain run hundreds of times faster than real time.
    """
    import soxr
    from scipy.signal import oaconvolve

    audio = np.ascontiguousarray(audio, dtype=np.float32)
    frames = audio.shape[1]
    if ir.shape[1] <= SHORT_IR_TAPS:
        return oaconvolve(audio, ir, axes=1)[:, :frames].astype(np.float32)
    low_rate = sample_rate / TAIL_DECIMATION
    reflections = (
        soxr.resample(np.ascontiguousarray(ir[:, 1:].T), sample_rate, low_rate, quality="MQ").T * TAIL_DECIMATION
    )
    decimated = soxr.resample(audio.T, sample_rate, low_rate, quality="MQ").T
    late = oaconvolve(decimated, reflections.astype(np.float32), axes=1)
    late = soxr.resample(np.ascontiguousarray(late.T, dtype=np.float32), low_rate, sample_rate, quality="MQ").T
    out = audio * ir[:, :1]
    usable = min(frames - 1, late.shape[1])
    out[:, 1 : 1 + usable] += late[:, :usable]
    return out.astype(np.float32)

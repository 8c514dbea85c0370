"""Streaming song identification at a concert, as a listener holding up a phone meets it: the recognizer
(`identification.streaming`) hears 30 s of a catalog track through the concert chain in 0.1 s chunks and
answers every half second. Measured: time to the first correct answer, wrong answers, answer flips per
minute once it has answered, and false positives (any answer at all) on streams where the right answer is
none: noise-only (pink and white noise through the arena), crowd-only (the concert chain's crowd alone: ten
muffled voices of other music, swelling like an audience) and unknown music (a song outside the catalog
through the concert chain, a harder case than the issue's two).

The embedding is `bench_retrieval.py`'s (trained on 300 chorales, cached; run that first). Two presets of the
answer policy are tuned on a development catalog of 17 other chorales and its own empty streams, each the
grid's setting with the fastest median first answer there among those with at most 1 % wrong answers and 0.5
flips a minute and:
- default: at most 0.5 % answers to noise-only and to crowd-only streams (the issue's false positives);
- strict: the same, and at most 0.5 % answers to unknown music as well.
The evaluation catalog is 32 other chorales, with other empty streams. Each catalog's index measures its noise
score as the `song_index` asset does (`streaming.noise_score`: the largest lead over the runner-up that seeded
noise gives a song); the presets are tuned without that guard and evaluated with it, as `identify` answers.

Targets (issue 22), at 0 dB with the default preset: median time to first correct <= 3 s; false positives on
noise-only segments <= 1 %; <= 1 flip per minute on the true track.

    .venv/bin/python benchmarks/bench_streaming.py    (about 20 min on 2 cores; needs bench_retrieval.py's cache)
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
import time

import numpy as np
from concert_catalog import CACHE, CALIBRATION_TRACKS, catalogs, chorales, concert, crowd_pool, render_track

from pipeline_project.augmentation.chains import noise_texture, sample_chain
from pipeline_project.identification import catalog as song_catalog
from pipeline_project.identification.streaming import (
    PRESETS,
    AnswerPolicy,
    RecognizerSettings,
    StreamingRecognizer,
    noise_score,
)
from pipeline_project.synthesis.render import available_soundfonts

SNRS_DB = (-5, 0, 5)
STREAM_S = 30
CHUNK_S = 0.1
FIRST_CORRECT_TARGET_S, FALSE_POSITIVE_TARGET, FLIPS_TARGET = 3.0, 0.01, 1.0
EMPTY_KINDS = ("noise", "crowd", "unknown")
# What each preset must hold on the development catalog at 0 dB: answers to each kind of empty stream, wrong
# answers, flips a minute.
PRESET_LIMITS = {
    "default": ({"noise": 0.005, "crowd": 0.005}, 0.01, 0.5),
    "strict": ({"noise": 0.005, "crowd": 0.005, "unknown": 0.005}, 0.01, 0.5),
}
GRID = {
    "min_score": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0),
    "min_lead": (0.2, 0.35, 0.5, 0.7),
    "switch_ratio": (1.5, 2.0, 3.0),
}


def heard(index, model, audio: np.ndarray, rate: int) -> list:
    """Each hop's (time, matches) of a stream fed in CHUNK_S chunks: what the answer policy decides from, the
    same whatever the settings tuned here."""
    recognizer = StreamingRecognizer(index, model, keep_votes=True)
    chunk = int(CHUNK_S * rate)
    for start in range(0, audio.shape[-1], chunk):
        recognizer.feed(audio[..., start : start + chunk], rate)
    policy = AnswerPolicy(index)
    return [(seconds, policy.matches_at(seconds, votes)) for seconds, votes in recognizer.heard]


def replay(settings: RecognizerSettings, hops: list, noise: float) -> list:
    policy = AnswerPolicy(None, settings, noise=noise)  # deciding reads only the matches and the noise score
    return [policy.decide(seconds, matches) for seconds, matches in hops]


def stream_scores(answers: list, truth: str | None) -> dict:
    tracks = [answer.track for answer in answers]
    if truth is None:
        return {"answered": sum(track is not None for track in tracks), "hops": len(tracks)}
    first_correct = next((a.seconds for a in answers if a.track == truth), np.inf)
    first_any = next((i for i, track in enumerate(tracks) if track is not None), None)
    after = tracks[first_any:] if first_any is not None else []
    flips = sum(1 for a, b in zip(after, after[1:]) if a != b)
    minutes = len(after) * (answers[1].seconds - answers[0].seconds) / 60 if len(answers) > 1 else 0
    return {
        "first_correct": first_correct,
        "wrong": sum(track is not None and track != truth for track in tracks),
        "hops": len(tracks),
        "flips": flips,
        "minutes": minutes,
    }


def summary(true_streams: list, empty_streams: dict) -> dict:
    firsts = np.array([s["first_correct"] for s in true_streams])
    minutes = sum(s["minutes"] for s in true_streams)
    return {
        "median_first": float(np.median(firsts)),
        "within_5s": float(np.mean(firsts <= 5.0)),
        "never": float(np.mean(np.isinf(firsts))),
        "wrong": sum(s["wrong"] for s in true_streams) / max(1, sum(s["hops"] for s in true_streams)),
        "flips_per_min": sum(s["flips"] for s in true_streams) / minutes if minutes else 0.0,
        **{
            f"fp_{kind}": sum(s["answered"] for s in streams) / max(1, sum(s["hops"] for s in streams))
            for kind, streams in empty_streams.items()
        },
    }


def streams_of(tracks: dict, pool, snr: float, seed: int) -> list:
    """(track, 30 s of a concert rendition from a seeded start) per track."""
    out = []
    for number, (track, (audio, rate)) in enumerate(tracks.items()):
        rng = np.random.default_rng([seed, number])
        live = concert(audio, rate, seed=seed * 1000 + number, pool=pool, snr_db=snr)
        start = int(rng.integers(0, max(1, live.shape[1] - STREAM_S * rate)))
        out.append((track, live[:, start : start + STREAM_S * rate], rate))
    return out


def empty_streams(outside: list, pool, count: int, seed: int) -> dict:
    """Streams with no catalog song, `count` of each kind: noise-only (pink and white noise through the arena, at
    the level of music), crowd-only (the concert chain's crowd texture alone, at the same level) and unknown
    music (songs of `outside` through the concert chain)."""
    rate = outside[0][1]
    rng = np.random.default_rng(seed)
    level = 0.1  # RMS of the noise and the crowd before the chain
    noise = []
    for number in range(count):
        white = rng.standard_normal(STREAM_S * rate).astype(np.float32)
        if number % 2 == 0:  # pink: white noise shaped to fall 3 dB an octave
            spectrum = np.fft.rfft(white)
            spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
            white = np.fft.irfft(spectrum, len(white)).astype(np.float32)
        stereo = np.stack([white, white]) * level / np.sqrt(np.mean(white**2))
        noise.append(concert(stereo, rate, seed=seed * 100 + number, pool=pool, snr_db=10))
    crowds = []
    for number in range(count):
        chain = sample_chain(["concert"], seed=seed * 100 + 70 + number, pool_ids=pool.ids())
        step = next(step for step in chain["steps"] if step["name"] == "noise")
        crowd = noise_texture(step, (2, STREAM_S * rate), rate, pool)
        crowds.append(crowd * level / np.sqrt(np.mean(crowd**2)))
    unknown = []
    for number in range(count):
        audio, _ = outside[number % len(outside)]
        live = concert(audio, rate, seed=seed * 100 + 50 + number, pool=pool, snr_db=10)
        start = int(rng.integers(0, max(1, live.shape[1] - STREAM_S * rate)))
        unknown.append(live[:, start : start + STREAM_S * rate])
    return {kind: [(None, a, rate) for a in batch] for kind, batch in zip(EMPTY_KINDS, (noise, crowds, unknown))}


def hear_streams(model, args) -> dict:
    """{catalog name: {stream kind: [(true track or None, each hop's (time, matches))]}}: the recognizer's evidence
    on every stream, which any answer policy can be replayed over."""
    started = time.perf_counter()
    development, evaluation = catalogs(args.train_tracks, args.catalog_tracks)
    soundfonts = available_soundfonts()
    # The first CALIBRATION_TRACKS training chorales make the concert chain's crowd (as in bench_retrieval.py); the
    # next ones are the unknown music, different chorales for each catalog.
    crowd = CALIBRATION_TRACKS
    training = [render_track(name, i, soundfonts) for i, name in enumerate(chorales(crowd + 2 * args.empty_streams, 0))]
    pool = crowd_pool(training)  # takes the first CALIBRATION_TRACKS
    print(f"rendered the catalogs, the crowd and the unknown music in {time.perf_counter() - started:.0f} s")

    def index_of(tracks: dict):
        index = song_catalog.build(
            (
                (t, *song_catalog.catalog_embeddings(model, a, r, hop_frames=args.catalog_hop_frames))
                for t, (a, r) in tracks.items()
            ),
            dim=64,
            hop_seconds=args.catalog_hop_frames * song_catalog.FRAME_SECONDS,
        )
        index.info["noise_score"] = noise_score(index, model)  # as the song_index asset measures it
        return index

    started = time.perf_counter()
    heard_seconds = 0.0
    votes = {}
    for name, tracks, seed, outside in (
        ("development", development, 1, training[crowd : crowd + args.empty_streams]),
        ("evaluation", evaluation, 2, training[crowd + args.empty_streams :]),
    ):
        index = index_of(tracks)
        streams = {snr: streams_of(tracks, pool, snr, seed * 10 + i) for i, snr in enumerate(SNRS_DB)}
        streams.update(empty_streams(outside, pool, args.empty_streams, seed))
        votes[name] = {
            kind: [(truth, heard(index, model, audio, rate)) for truth, audio, rate in batch]
            for kind, batch in streams.items()
        }
        votes[name]["noise_score"] = index.info["noise_score"]
        heard_seconds += sum(a.shape[-1] / r for batch in streams.values() for _, a, r in batch)
    seconds = time.perf_counter() - started
    print(
        f"heard {heard_seconds / 60:.0f} min of streams in {seconds:.0f} s ({heard_seconds / seconds:.1f}x real time)"
    )
    return votes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-tracks", type=int, default=300, help="as bench_retrieval.py was run")
    parser.add_argument("--catalog-tracks", type=int, default=32, help="as bench_retrieval.py was run")
    parser.add_argument("--steps", type=int, default=3000, help="as bench_retrieval.py was run")
    parser.add_argument(
        "--empty-streams", type=int, default=8, help="streams of each empty kind (noise, crowd, unknown music)"
    )
    parser.add_argument(
        "--catalog-hop-frames",
        type=int,
        default=song_catalog.CATALOG_HOP_FRAMES,
        help=f"frames between a catalog track's windows (default {song_catalog.CATALOG_HOP_FRAMES}: one a second)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="tune and score over the votes the last run heard (saved beside the cached embedding), not hearing again",
    )
    args = parser.parse_args()
    from concert_catalog import cached_model

    model = cached_model(args.train_tracks, steps=args.steps)
    if model is None:
        sys.exit("no cached embedding: run benchmarks/bench_retrieval.py first (it trains and caches one)")
    votes_file = (
        CACHE / f"streaming_heard-{args.train_tracks}-{args.catalog_tracks}-{args.steps}-{args.empty_streams}.pkl"
    )
    if args.catalog_hop_frames != song_catalog.CATALOG_HOP_FRAMES:
        votes_file = votes_file.with_name(votes_file.stem + f"-hop{args.catalog_hop_frames}.pkl")
    if args.replay:
        if not votes_file.exists():
            sys.exit(f"--replay: no votes saved at {votes_file}: run without --replay first")
        votes = pickle.loads(votes_file.read_bytes())
        print(f"replaying the votes heard by an earlier run ({votes_file})")
    else:
        votes = hear_streams(model, args)
        votes_file.write_bytes(pickle.dumps(votes))

    def scores(name: str, settings: RecognizerSettings, snrs=SNRS_DB, noise_guard: bool = True) -> dict:
        by_kind = votes[name]
        noise = by_kind["noise_score"] if noise_guard else 0.0
        out = {}
        for snr in snrs:
            true = [stream_scores(replay(settings, hops, noise), truth) for truth, hops in by_kind[snr]]
            empty = {
                kind: [stream_scores(replay(settings, hops, noise), None) for _, hops in by_kind[kind]]
                for kind in EMPTY_KINDS
            }
            out[snr] = summary(true, empty)
        return out

    print(
        "noise score (seeded noise probes, as the song_index asset measures it): "
        + ", ".join(f"{name} catalog {votes[name]['noise_score']:.3f}" for name in ("development", "evaluation"))
        + f"; an answer's lead over the runner-up needs {RecognizerSettings().noise_margin} times it (evaluation only)"
    )
    grid = [RecognizerSettings(**dict(zip(GRID, values))) for values in itertools.product(*GRID.values())]
    # Tuned on the catalog's own evidence, without the noise guard: with it, a min_score that lets noise
    # through on the evaluation catalog (0.25: 27 % answers to noise there) looked safe on the development
    # catalog, whose noise guard happened to be stricter. The guard protects small collections; it is not a
    # tuning knob. The evaluation below applies it, as `identify` does.
    development = [(settings, scores("development", settings, snrs=(0,), noise_guard=False)[0]) for settings in grid]
    chosen = {}
    for preset, (false_positives, wrong, flips) in PRESET_LIMITS.items():
        qualified = [
            (settings, at_0)
            for settings, at_0 in development
            if all(at_0[f"fp_{kind}"] <= limit for kind, limit in false_positives.items())
            and at_0["wrong"] <= wrong
            and at_0["flips_per_min"] <= flips
        ]

        def rank(candidate):
            # The fastest first answer; of equally fast ones, the fewest false positives and wrong answers, then
            # the first in the grid's order (the most lenient).
            _, at_0 = candidate
            return at_0["median_first"], sum(at_0[f"fp_{kind}"] for kind in EMPTY_KINDS) + at_0["wrong"]

        chosen[preset] = min(qualified, key=rank)[0] if qualified else PRESETS[preset]
        shipped = "" if chosen[preset] != PRESETS[preset] else " (as shipped)"
        print(
            f"{preset} preset, tuned on the development catalog ({len(qualified)} of {len(grid)} settings qualified): "
            + ", ".join(f"{k} {getattr(chosen[preset], k)}" for k in GRID)
            + (shipped if qualified else " (none qualified: the shipped preset)")
        )

    results = {}
    for preset, settings in chosen.items():
        results[preset] = scores("evaluation", settings)
        print(
            f"\n{preset} preset; evaluation catalog: {args.catalog_tracks} tracks, one {STREAM_S} s stream each per SNR, "
            "hop 0.5 s; FP: answers to streams with no catalog song"
        )
        print(
            f"{'SNR':>6} {'median first correct':>21} {'within 5 s':>11} {'never':>6} {'wrong':>7} "
            f"{'flips/min':>10} {'FP noise':>9} {'FP crowd':>9} {'FP unknown':>11}"
        )
        for snr, r in results[preset].items():
            print(
                f"{snr:>+4d} dB {r['median_first']:>19.1f} s {r['within_5s']:>11.2f} {r['never']:>6.2f} "
                f"{r['wrong'] * 100:>6.1f}% {r['flips_per_min']:>10.2f} {r['fp_noise'] * 100:>8.1f}% "
                f"{r['fp_crowd'] * 100:>8.1f}% {r['fp_unknown'] * 100:>10.1f}%"
            )
    at_0 = results["default"][0]
    holds = (
        at_0["median_first"] <= FIRST_CORRECT_TARGET_S
        and at_0["fp_noise"] <= FALSE_POSITIVE_TARGET
        and at_0["flips_per_min"] <= FLIPS_TARGET
    )
    print(
        f"\ntargets at 0 dB (default preset): median first correct <= {FIRST_CORRECT_TARGET_S:.0f} s, false positives "
        f"on noise <= {FALSE_POSITIVE_TARGET * 100:.0f} %, flips per minute <= {FLIPS_TARGET:.0f}: "
        f"{'PASS' if holds else 'FAIL'}"
    )
    strict = results["strict"][0]
    print(
        f"strict preset at 0 dB: median first correct {strict['median_first']:.1f} s, answers to unknown music "
        f"{strict['fp_unknown'] * 100:.1f} % (default preset: {at_0['fp_unknown'] * 100:.1f} %)"
    )
    print(
        f"streaming at 0 dB: median first correct {at_0['median_first']:.1f} s, false positives "
        f"{at_0['fp_noise'] * 100:.1f} %, flips per minute {at_0['flips_per_min']:.1f}"
    )


if __name__ == "__main__":
    main()

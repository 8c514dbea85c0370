"""Train the learned analysers from the project's own renders and write them as a model set: `make train-analysis`.

    python -m pipeline_project.training.train_analysis [--out pipeline_project/models] [--seed 0]
        [--renders-per-piece 2] [--max-pieces N] [--steps 2400] [--width 32] [--corpus data/analysis_corpus]
        [--harmony-size cpu|gpu] [--harmony-device cpu|cuda]

1. Plans and renders the corpus (`training.analysis_corpus`): training pieces through the training
   SoundFonts, validation pieces through the held-out ones, each in one of the four listening conditions.
   Renders are cached by plan, so a second run only trains.
2. Trains the beat network and the harmony network for a fixed number of steps from the seed (the same
   seed gives the same weights), keeping the weights of the best validation loss. The beat network trains on
   the CPU; the harmony network at `--harmony-size gpu` (`analysis_models.HARMONY_ON_GPU`) wants a GPU
   (`--harmony-device cuda`), and that is how the shipped one was made.
3. Scores both on the validation renders, every validation piece heard in all four conditions, with the
   decoders the pipeline uses (beat F-measure, tempo, chord majmin, key), exports ONNX and writes each
   model card beside it.
Reserved pieces are never planned (`synthesis.corpus_split`); the test split is left to the benchmark.

With `--rescore`, nothing is trained: the model set in `--out` is scored again on the validation renders (step
3 with the current decoders and labels) and its cards rewritten, networks and versions untouched.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from functools import cache
from itertools import product
from pathlib import Path

import numpy as np

from pipeline_project.analysis import frames
from pipeline_project.analysis.learned import (
    CHORD_TRANSPOSITIONS,
    NETWORK_OF,
    SHIPPED_MODELS,
    DecoderSettings,
    decode,
    decode_rhythm,
    harmony_log_probabilities,
)
from pipeline_project.files import sha256_of
from pipeline_project.layout import meter_cache
from pipeline_project.parallel import available_cores, map_in_processes
from pipeline_project.separation.separator import pick_device
from pipeline_project.training import analysis_corpus, analysis_models
from pipeline_project.training.analysis_registry import MINIMUM_GAIN
from pipeline_project.training.reproduce import source_of_training

DEFAULT_CORPUS = Path("data/analysis_corpus")
# Each network replaces the DSP path only where it is better on all of its metrics by MINIMUM_GAIN, the gate
# the registry applies (`training.analysis_registry`).
PROMOTION_METRICS = {"beat_tracker": ("beat_f",), "chord_recognizer": ("chord_majmin",), "key_tracker": ("key",)}
PROMOTION_RULE = (
    f"used instead of the DSP path when better by at least {MINIMUM_GAIN} on every promotion metric over the "
    "validation renders, and no worse on any in any listening condition"
)


def network_activations(beat_network, harmony_network, example: dict) -> dict[str, np.ndarray]:
    import torch

    def harmony(features: np.ndarray) -> list[np.ndarray]:
        return [logits[0].numpy() for logits in harmony_network(torch.from_numpy(features)[None])]

    with torch.no_grad():
        pulse = torch.sigmoid(beat_network(torch.from_numpy(example["beat_features"])[None]))[0].numpy()
        chord, bass, key = harmony_log_probabilities(harmony, example["harmony_features"])
    return {
        "beat": pulse[:, 0],
        "downbeat": pulse[:, 1],
        "chord": chord,
        "bass": bass,
        "key": key,
        "pitch_classes": frames.pitch_class_energy(example["harmony_features"]),
    }


def score_example(result: dict, meta: dict) -> dict[str, float]:
    from pipeline_project.analysis.accuracy import score_analysis

    labels = {
        "beats": meta["beats"],
        "downbeats": meta["downbeats"],
        "tempo_bpm": 60.0 / np.median(np.diff(meta["beats"])),
        "key": meta["key"],
        "chords": meta["chords"],
        "time_signature": meta["time_signature"],
    }
    estimate = result | {
        "beat_times": list(result["beat_times"]),
        "downbeat_times": list(result["downbeat_times"]),
        "time_signature": meta["time_signature"],
    }
    scores = score_analysis(estimate, labels, meta["duration"])
    scores.pop("meter_ok", None)
    return scores


ACTIVATION_PRIORS = (0.1, 0.2, 0.3, 0.4)
NOISE_FLOORS = (None, 0.10, 0.12, 0.14, 0.16)
# (downbeat_weight, downbeat_level) pairs; the level does not matter at weight 0.
DOWNBEAT_EVIDENCE = ((0.0, DecoderSettings.downbeat_level), (0.5, 0.05), (0.5, 0.1), (1.0, 0.05), (1.0, 0.1))
RING_OUT_RATIOS = (0.0, 0.5, 0.7, 0.9)
CHORD_CHANGE_PENALTIES = (0.1, 0.25, 0.5, 1.0, 1.5)
# Seconds left out at each end of a beat when its chord is read (tuned with the change penalty).
CHORD_MARGINS = (0.0, 0.05, 0.1, 0.15)
KEY_EVIDENCE_WEIGHTS = (0.0, 2.0, 5.0, 10.0)


def _mean_scores(rows: list[dict]) -> dict[str, float]:
    return {metric: round(float(np.mean([r[metric] for r in rows])), 4) for metric in rows[0]}


def by_condition(rows: list[dict], conditions: list[str]) -> dict[str, dict[str, float]]:
    """Mean scores per listening condition (clean, room, reverb_noise, concert) of rows scored per render."""
    return {
        condition: _mean_scores([r for r, c in zip(rows, conditions) if c == condition])
        for condition in analysis_corpus.CONDITIONS
        if condition in conditions
    }


def tune_and_evaluate(
    activations: list[dict], corpus: list[dict], histogram: list[int]
) -> tuple[DecoderSettings, list[dict], list[dict]]:
    """Decoder settings tuned on the validation renders' activations (`network_activations`): the activation
    prior, its noise floor, the downbeat head's weight in the beat decoder, the ring-out ratio, then whether the
    chord head's harmonic rhythm may settle the metrical level (`learned.harmonic_level`), for beat F;
    then the chord change penalty with the margin left out at each end of a beat, for chord majmin; last the
    weight of the sound's own key evidence beside the key tracker's, for the key. Returns them with the scores
    they give per validation render and what they decode there (`learned.decode`)."""

    @cache
    def rhythms(settings: DecoderSettings) -> list[dict]:
        return [decode_rhythm(a, e["meta"]["duration"], settings) for a, e in zip(activations, corpus)]

    def decoded(settings: DecoderSettings) -> list[dict]:
        # Beats take nearly all of the decoding time and do not depend on the chord and key settings: the
        # last two steps decode them once.
        beats = rhythms(
            replace(
                settings,
                chord_change_penalty=DecoderSettings.chord_change_penalty,
                chord_margin_s=DecoderSettings.chord_margin_s,
                key_evidence_weight=DecoderSettings.key_evidence_weight,
            )
        )
        return [decode(a, e["meta"]["duration"], settings, rhythm) for a, e, rhythm in zip(activations, corpus, beats)]

    @cache  # each step's current value was scored by the step before: decode it once
    def rows(settings: DecoderSettings) -> list[dict]:
        return [score_example(result, e["meta"]) for result, e in zip(decoded(settings), corpus)]

    def scores(settings: DecoderSettings) -> dict[str, float]:
        return _mean_scores(rows(settings))

    settings = DecoderSettings(tuple(histogram))
    prior = max(ACTIVATION_PRIORS, key=lambda p: scores(replace(settings, activation_prior=p))["beat_f"])
    settings = replace(settings, activation_prior=prior)
    floor = max(NOISE_FLOORS, key=lambda f: scores(replace(settings, noise_floor=f))["beat_f"])
    settings = replace(settings, noise_floor=floor)
    weight, level = max(
        DOWNBEAT_EVIDENCE,
        key=lambda pair: scores(replace(settings, downbeat_weight=pair[0], downbeat_level=pair[1]))["beat_f"],
    )
    settings = replace(settings, downbeat_weight=weight, downbeat_level=level)
    ratio = max(RING_OUT_RATIOS, key=lambda r: scores(replace(settings, ring_out_ratio=r))["beat_f"])
    settings = replace(settings, ring_out_ratio=ratio)
    # Only where the harmonic rhythm helps: max keeps the first of equals, the beats as decoded.
    harmonic = max((False, True), key=lambda h: scores(replace(settings, harmonic_level=h))["beat_f"])
    settings = replace(settings, harmonic_level=harmonic)
    penalty, margin = max(
        product(CHORD_CHANGE_PENALTIES, CHORD_MARGINS),
        key=lambda pair: scores(replace(settings, chord_change_penalty=pair[0], chord_margin_s=pair[1]))[
            "chord_majmin"
        ],
    )
    settings = replace(settings, chord_change_penalty=penalty, chord_margin_s=margin)
    weight = max(KEY_EVIDENCE_WEIGHTS, key=lambda w: scores(replace(settings, key_evidence_weight=w))["key"])
    settings = replace(settings, key_evidence_weight=weight)
    return settings, rows(settings), decoded(settings)


def _dsp_scores_of(job: tuple) -> tuple[dict[str, float], np.ndarray]:
    from pipeline_project.analysis.mir import analyze
    from pipeline_project.separation.separator import separate_with_fallback

    plan, catalog = job
    mix, rate, labels = analysis_corpus.render_plan(plan, catalog)
    result = analyze(separate_with_fallback(mix, rate).stems, rate)
    meta = {k: labels[k] for k in ("beats", "downbeats", "key", "chords", "time_signature")} | {
        "duration": labels["duration"]
    }
    scores = score_example(
        result
        | {"beat_times": np.asarray(result["beat_times"]), "downbeat_times": np.asarray(result["downbeat_times"])},
        meta,
    )
    return scores, np.asarray(result["pitch_class_profile"])


def dsp_rows(plans, catalog, workers: int = 0) -> tuple[list[dict], list[np.ndarray]]:
    """The DSP path's scores per validation render (separation, then `analyze` without models), the bar the
    learned analysers must clear to be used, and each render's pitch-class profile there (the DSP key's
    evidence beside its chords)."""
    found = list(map_in_processes(_dsp_scores_of, [(p, catalog) for p in plans], workers))
    return [scores for scores, _ in found], [profile for _, profile in found]


def dsp_key_on_learned_chords(rows: list[dict], profiles: list[np.ndarray], decoded: list[dict], corpus) -> list[dict]:
    """The DSP path's rows with its key replaced by what the pipeline finds without the key tracker once the
    chord recognizer is promoted: the DSP key (`mir.key_with_chords`) fed the learned chords."""
    from pipeline_project.analysis.accuracy import key_score
    from pipeline_project.analysis.mir import key_with_chords

    return [
        row | {"key": key_score(e["meta"]["key"], *key_with_chords(profile, result["chords"])[:2])}
        for row, profile, result, e in zip(rows, profiles, decoded, corpus)
    ]


def train_in_process(job: tuple) -> tuple[str, tuple]:
    """Train one network from corpus files, single-threaded (module-level: it runs in a worker process)."""
    import torch

    kind, train_paths, validation_paths, settings, device = job
    torch.set_num_threads(1)
    corpus = [analysis_corpus.load(p) for p in train_paths]
    validation = [analysis_corpus.load(p) for p in validation_paths]
    return kind, analysis_models.train(
        kind, corpus, validation, settings, log=lambda line: print(line, flush=True), device=device
    )


def file_digest(path: Path) -> str:
    return sha256_of(path)[:12]


def earns_promotion(scores: dict, baseline: dict, per_condition: dict, metrics) -> bool:
    """Whether a family replaces the DSP path: better on each of its metrics by MINIMUM_GAIN over all the
    validation renders, and no worse in any listening condition (the issue's gate judges every condition, as
    the learned separator's does)."""
    overall = all(scores[m] >= baseline[m] + MINIMUM_GAIN for m in metrics)
    conditions = per_condition["dsp"]
    return overall and all(per_condition["learned"][c][m] >= conditions[c][m] for c in conditions for m in metrics)


def judge(
    rows: list[dict], dsp: list[dict], profiles: list[np.ndarray], decoded: list[dict], corpus: list[dict], conditions
) -> dict:
    """Which families are promoted, from the learned analysers' and the DSP path's scores per validation render
    (`rows`, `dsp`), the DSP path's pitch-class profiles and the learned decoding per render, and each render's
    listening condition. Each family is judged against what the pipeline would run without it. Without the
    key tracker but with a promoted chord recognizer, that is the DSP key fed the learned chords, not the DSP
    chords: what a promoted key tracker would replace. `dsp_key_chords` says which chords the baseline's key
    was fed."""
    scores = _mean_scores(rows)

    def judged_against(baseline_rows: list[dict], key_chords: str) -> dict:
        baseline = _mean_scores(baseline_rows)
        per_condition = {"learned": by_condition(rows, conditions), "dsp": by_condition(baseline_rows, conditions)}
        return {
            "validation_scores": scores,
            "dsp_validation_scores": baseline,
            "dsp_key_chords": key_chords,
            "validation_by_condition": per_condition,
            "promoted": {
                name: earns_promotion(scores, baseline, per_condition, metrics)
                for name, metrics in PROMOTION_METRICS.items()
            },
        }

    judged = judged_against(dsp, "dsp")
    if judged["promoted"]["chord_recognizer"]:
        judged = judged_against(dsp_key_on_learned_chords(dsp, profiles, decoded, corpus), "learned")
    return judged


def validate(
    activations: list[dict], validation: list[dict], plans: list, histogram: list[int], catalog, workers: int, log
) -> dict:
    """Tune the decoders on the validation renders' activations, score the learned analysers and the DSP path
    there (overall and per condition), and decide which families are promoted: what a model card records."""
    decoder, rows, decoded = tune_and_evaluate(activations, validation, histogram)
    all_dsp, profiles = dsp_rows(plans, catalog, workers)
    judged = judge(rows, all_dsp, profiles, decoded, validation, [plan.condition for plan in plans])
    log(
        f"validation (held-out pieces and SoundFonts): learned {judged['validation_scores']}\n  DSP path "
        f"{judged['dsp_validation_scores']} (its key on the {judged['dsp_key_chords']} chords; on the DSP chords "
        f"{_mean_scores(all_dsp)['key']})\n  decoder: activation prior {decoder.activation_prior}, noise floor "
        f"{decoder.noise_floor}, downbeat weight {decoder.downbeat_weight} against {decoder.downbeat_level}, "
        f"ring-out ratio {decoder.ring_out_ratio}, metrical level from harmony {decoder.harmonic_level}, chord "
        "change penalty "
        f"{decoder.chord_change_penalty}, chord margin {decoder.chord_margin_s} s, key evidence weight "
        f"{decoder.key_evidence_weight}; promoted (used by the "
        f"pipeline instead of the DSP path): {judged['promoted']}"
    )
    return judged | {"decoder": decoder}


def validation_figures(checked: dict) -> dict:
    """The validation scores every card of a set records, from `validate`. `dsp_key_chords` says which chords
    the DSP path's key was fed there (`learned` where the chord recognizer is promoted)."""
    return {
        k: checked[k]
        for k in ("validation_scores", "dsp_validation_scores", "dsp_key_chords", "validation_by_condition")
    }


def decoder_fields(name: str, decoder: DecoderSettings) -> dict:
    """The decoder settings a family's card keeps."""
    if name == "beat_tracker":
        return {
            "activation_prior": decoder.activation_prior,
            "noise_floor": decoder.noise_floor,
            "downbeat_weight": decoder.downbeat_weight,
            "downbeat_level": decoder.downbeat_level,
            "ring_out_ratio": decoder.ring_out_ratio,
            "harmonic_level": decoder.harmonic_level,
        }
    # The harmony cards say at which pitches the chord head was heard when they were scored (a constant of
    # the decoder, `learned.CHORD_TRANSPOSITIONS`, recorded so a card's figures can be traced to it).
    heard_at = {"chord_transpositions": list(CHORD_TRANSPOSITIONS)}
    chords = {"chord_change_penalty": decoder.chord_change_penalty, "chord_margin_s": decoder.chord_margin_s}
    if name == "key_tracker":
        return chords | {"key_evidence_weight": decoder.key_evidence_weight} | heard_at
    return chords | heard_at


def validation_plans(catalog, seed: int, max_pieces: int | None, meters: Path, every_condition: bool = False) -> list:
    """The validation renders of a training run with this seed and `max_pieces` (an eighth as many pieces):
    each piece in one condition drawn at random (for the validation loss while training), or with
    `every_condition` in all four (for tuning the decoders and for the gate, which judges every condition:
    four times the renders for the same pieces)."""
    return analysis_corpus.plan_renders(
        "validation",
        list(catalog),
        1,
        seed,
        max(1, max_pieces // 8) if max_pieces else None,
        meter_cache=meters,
        every_condition=every_condition,
    )


def train_model_set(
    out: Path,
    corpus: Path = DEFAULT_CORPUS,
    seed: int = 0,
    renders_per_piece: int = 2,
    max_pieces: int | None = None,
    steps: int = analysis_models.TrainingSettings.steps,
    width: int = analysis_models.TrainingSettings.width,
    workers: int = 0,
    log=lambda line: print(line, flush=True),
    catalog: dict[str, Path] | None = None,
    harmony_size: str = "cpu",
    harmony_device: str = "cpu",
) -> list[Path]:
    """Render the corpus (cached), train both networks, tune the decoders and score on the validation
    renders, and write the model set (ONNX and cards) to `out`. Returns the validation renders' files, on
    which a registered champion can be scored the same way (`training.analysis_registry`). `catalog`: the
    SoundFonts to render with (name -> path; default: every one on this machine, `available_soundfonts`).
    `harmony_size` and `harmony_device`: the harmony network's setting ("cpu" or "gpu", see
    `analysis_models.harmony_settings`) and where it trains; the beat network always trains on the CPU."""
    catalog = analysis_corpus.soundfont_catalog(catalog, log)
    harmony_device = pick_device(harmony_device)
    arguments = ["--seed", seed, "--renders-per-piece", renders_per_piece, "--steps", steps, "--width", width]
    arguments += ["--max-pieces", max_pieces] if max_pieces else []
    if (harmony_size, harmony_device) != ("cpu", "cpu"):
        arguments += ["--harmony-size", harmony_size, "--harmony-device", harmony_device]
    devices = {"beat": "cpu", "harmony": harmony_device}
    sources = {
        kind: source_of_training("pipeline_project.training.train_analysis", arguments, device=device)
        for kind, device in devices.items()
    }
    started = time.monotonic()
    meters = meter_cache(corpus)
    plans = {
        "train": analysis_corpus.plan_renders(
            "train", list(catalog), renders_per_piece, seed, max_pieces, meter_cache=meters
        ),
        "validation": validation_plans(catalog, seed, max_pieces, meters),
        "scoring": validation_plans(catalog, seed, max_pieces, meters, every_condition=True),
    }
    folders = {"train": "train", "validation": "validation", "scoring": "validation"}  # scoring holds validation's
    paths = {
        split: analysis_corpus.build(split_plans, corpus / folders[split], catalog, workers)
        for split, split_plans in plans.items()
    }
    log(
        f"corpus ready in {time.monotonic() - started:.0f} s: {len(paths['train'])} training renders, "
        f"{len(paths['validation'])} validation renders ({len(paths['scoring'])} with every condition)"
    )

    settings = {
        "beat": analysis_models.TrainingSettings(seed=seed, steps=steps, width=width),
        "harmony": analysis_models.harmony_settings(harmony_size, seed, steps, width),
    }
    jobs = [(kind, paths["train"], paths["validation"], settings[kind], devices[kind]) for kind in ("beat", "harmony")]
    # One process per network, each single-threaded: both train at once on 2 cores, and the weights do not
    # depend on how many cores a machine has.
    trained = dict(map_in_processes(train_in_process, jobs, workers=min(2, available_cores())))
    networks = {kind: network for kind, (network, _) in trained.items()}
    records = {kind: record for kind, (_, record) in trained.items()}
    validation = [analysis_corpus.load(p) for p in paths["scoring"]]
    histogram = analysis_models.tempo_histogram([analysis_corpus.load_meta(p) for p in paths["train"]])
    activations = [network_activations(networks["beat"], networks["harmony"], e) for e in validation]
    checked = validate(activations, validation, plans["scoring"], histogram, catalog, workers, log)

    out.mkdir(parents=True, exist_ok=True)
    common = {
        "seed": seed,
        "made_by": "make train-analysis (python -m pipeline_project.training.train_analysis)",
        **analysis_corpus.plans_described({"train": plans["train"], "validation": plans["scoring"]}),
        **validation_figures(checked),
        "reserved_pieces": "never used (synthesis.corpus_split)",
    }
    for kind in ("beat", "harmony"):
        network_name = "beat_tracker" if kind == "beat" else "chord_recognizer"
        path = out / f"{network_name}.onnx"
        analysis_models.export_onnx(networks[kind], kind, path)
        version = f"{seed}-{file_digest(path)}"
        log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), version {version}")
        for name in [n for n, network in NETWORK_OF.items() if network == network_name]:
            card = {
                **common,
                **sources[kind],
                "name": name,
                "version": version,
                "file": path.name,
                "network": type(networks[kind]).__name__,
                "training": records[kind],
                "promoted": checked["promoted"][name],
                "promotion_metrics": list(PROMOTION_METRICS[name]),
                "promotion_rule": PROMOTION_RULE,
            }
            if kind == "beat":
                card |= {"tempo_histogram": histogram, "fps": frames.BEAT_FPS}
            else:
                card |= {
                    "fps": frames.HARMONY_FPS,
                    "chord_qualities": list(frames.QUALITIES),
                    "output": "key" if name == "key_tracker" else "chord, bass",
                }
            analysis_models.write_card(out / f"{name}.json", card | decoder_fields(name, checked["decoder"]))
    return paths["scoring"]


def rescore_model_set(
    folder: Path, corpus: Path = DEFAULT_CORPUS, max_pieces: int | None = None, workers: int = 0, log=print
) -> dict:
    """Score a model set again on the validation renders of its seed and `max_pieces` (the training run's;
    rendered where missing) and rewrite its cards' validation figures, decoder settings and promotion in
    place; the networks and their versions are untouched. For when the validation renders' labels change
    (their plan version moves) or a decoder gains a setting: the gate then decides on what the renders
    really hold. Returns what the cards now record."""
    import json

    from pipeline_project.analysis import learned
    from pipeline_project.synthesis.render import available_soundfonts

    catalog = available_soundfonts()
    models = learned.load(folder)
    cards = {name: json.loads((folder / f"{name}.json").read_text()) for name in learned.MODEL_NAMES}
    seed = int(cards["beat_tracker"].get("seed", 0))
    plans = validation_plans(catalog, seed, max_pieces, meter_cache(corpus), every_condition=True)
    paths = analysis_corpus.build(plans, corpus / "validation", catalog, workers)
    validation = [analysis_corpus.load(p) for p in paths]
    activations = [
        learned.activations_of_features(models, learned.MODEL_NAMES, e["beat_features"], e["harmony_features"])
        for e in validation
    ]
    checked = validate(activations, validation, plans, cards["beat_tracker"]["tempo_histogram"], catalog, workers, log)
    for name, card in cards.items():
        card |= validation_figures(checked) | {
            "validation_renders": len(plans),
            "promoted": checked["promoted"][name],
            "rescored_with_plan_version": analysis_corpus.PLAN_VERSION,
        }
        analysis_models.write_card(folder / f"{name}.json", card | decoder_fields(name, checked["decoder"]))
    learned.load.cache_clear()
    return checked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_MODELS)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renders-per-piece", type=int, default=2)
    parser.add_argument("--max-pieces", type=int, default=None, help="fewer training pieces, for a quick run")
    parser.add_argument("--steps", type=int, default=analysis_models.TrainingSettings.steps)
    parser.add_argument(
        "--width", type=int, default=analysis_models.TrainingSettings.width, help="channels; 64+ on a GPU"
    )
    parser.add_argument(
        "--harmony-size",
        choices=("cpu", "gpu"),
        default="cpu",
        help="the harmony network's setting: cpu (the beat network's steps and width) or gpu (the shipped one's, "
        "analysis_models.HARMONY_ON_GPU)",
    )
    parser.add_argument(
        "--harmony-device",
        default="cpu",
        help="where the harmony network trains: cpu, cuda or auto (CUDA when present)",
    )
    parser.add_argument("--workers", type=int, default=0, help="render processes (0: one per core)")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="do not train: score the model set in --out again on the validation renders and rewrite its cards",
    )
    args = parser.parse_args(argv)
    if args.rescore:
        rescore_model_set(args.out, args.corpus, args.max_pieces, args.workers)
        return
    train_model_set(
        args.out,
        args.corpus,
        args.seed,
        args.renders_per_piece,
        args.max_pieces,
        args.steps,
        args.width,
        args.workers,
        harmony_size=args.harmony_size,
        harmony_device=args.harmony_device,
    )


if __name__ == "__main__":
    main()

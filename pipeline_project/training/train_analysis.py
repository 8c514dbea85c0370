"""Train the learned analysers from the project's own renders and write them as a model set: `make train-analysis`.

    python -m pipeline_project.training.train_analysis [--out pipeline_project/models] [--seed 0]
        [--renders-per-piece 1] [--max-pieces N] [--steps 1500] [--width 32] [--corpus data/analysis_corpus]

1. Plans and renders the corpus (`training.analysis_corpus`): training pieces through the training
   SoundFonts, validation pieces through the held-out ones, each in one of the four listening conditions.
   Renders are cached by plan, so a second run only trains.
2. Trains the beat network and the harmony network for a fixed number of steps from the seed (the same
   seed gives the same weights), keeping the weights of the best validation loss.
3. Scores both on the validation renders with the decoders the pipeline uses (beat F-measure, tempo,
   chord majmin, key), exports ONNX and writes each model card beside it.
Reserved pieces are never planned (`synthesis.corpus_split`); the test split is left to the benchmark.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from pipeline_project.analysis import frames
from pipeline_project.analysis.learned import SHIPPED_MODELS, decode
from pipeline_project.training import analysis_corpus, analysis_models

DEFAULT_CORPUS = Path("data/analysis_corpus")


def network_activations(beat_network, harmony_network, example: dict) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        pulse = torch.sigmoid(beat_network(torch.from_numpy(example["beat_features"])[None]))[0].numpy()
        chord, bass, key = (torch.log_softmax(x, dim=-1)[0].numpy()
                            for x in harmony_network(torch.from_numpy(example["harmony_features"])[None]))
    return {"beat": pulse[:, 0], "downbeat": pulse[:, 1], "chord": chord, "bass": bass, "key": key}


def score_example(result: dict, meta: dict) -> dict[str, float]:
    from pipeline_project.analysis.accuracy import score_analysis

    labels = {"beats": meta["beats"], "downbeats": meta["downbeats"], "tempo_bpm": 60.0 / np.median(np.diff(meta["beats"])),
              "key": meta["key"], "chords": meta["chords"], "time_signature": meta["time_signature"]}
    estimate = result | {"beat_times": list(result["beat_times"]), "downbeat_times": list(result["downbeat_times"]),
                         "time_signature": meta["time_signature"]}
    scores = score_analysis(estimate, labels, meta["duration"])
    scores.pop("meter_ok", None)
    return scores


def evaluate(beat_network, harmony_network, corpus: list[dict], histogram: list[int]) -> dict[str, float]:
    rows = [score_example(decode(network_activations(beat_network, harmony_network, e), e["meta"]["duration"], histogram), e["meta"])
            for e in corpus]
    return {metric: round(float(np.mean([r[metric] for r in rows])), 4) for metric in rows[0]}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> None:
    from pipeline_project.synthesis.render import available_soundfonts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_MODELS)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renders-per-piece", type=int, default=1)
    parser.add_argument("--max-pieces", type=int, default=None, help="fewer training pieces, for a quick run")
    parser.add_argument("--steps", type=int, default=analysis_models.TrainingSettings.steps)
    parser.add_argument("--width", type=int, default=analysis_models.TrainingSettings.width, help="channels; 64+ on a GPU")
    parser.add_argument("--workers", type=int, default=0, help="render processes (0: one per core)")
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    catalog = available_soundfonts()
    if len(catalog) < 2:
        print(f"only {len(catalog)} SoundFont on this machine: training and validation share it, so the validation "
              "scores are not on unheard timbres (make soundfonts installs more)")
    started = time.monotonic()
    plans = {"train": analysis_corpus.plan_renders("train", list(catalog), args.renders_per_piece, args.seed, args.max_pieces),
             "validation": analysis_corpus.plan_renders("validation", list(catalog), 1, args.seed,
                                                        max(1, args.max_pieces // 8) if args.max_pieces else None)}
    corpora = {}
    for split, split_plans in plans.items():
        paths = analysis_corpus.build(split_plans, args.corpus / split, catalog, args.workers)
        corpora[split] = [analysis_corpus.load(p) for p in paths]
    print(f"corpus ready in {time.monotonic() - started:.0f} s: {len(corpora['train'])} training renders, "
          f"{len(corpora['validation'])} validation renders", flush=True)

    settings = analysis_models.TrainingSettings(seed=args.seed, steps=args.steps, width=args.width)
    histogram = analysis_models.tempo_histogram(corpora["train"])
    networks, records = {}, {}
    for kind in ("beat", "harmony"):
        networks[kind], records[kind] = analysis_models.train(kind, corpora["train"], corpora["validation"], settings,
                                                              log=lambda line: print(line, flush=True))
    scores = evaluate(networks["beat"], networks["harmony"], corpora["validation"], histogram)
    print(f"validation (held-out pieces and SoundFonts): {scores}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    fonts = {split: sorted({f for p in split_plans for f in p.soundfonts}) for split, split_plans in plans.items()}
    common = {"seed": args.seed, "made_by": "make train-analysis (python -m pipeline_project.training.train_analysis)",
              "training_renders": len(plans["train"]), "validation_renders": len(plans["validation"]),
              "training_soundfonts": fonts["train"], "validation_soundfonts": fonts["validation"],
              "conditions": list(analysis_corpus.CONDITIONS), "validation_scores": scores,
              "reserved_pieces": "never used (synthesis.corpus_split)"}
    for name, kind in (("beat_tracker", "beat"), ("chord_recognizer", "harmony")):
        path = args.out / f"{name}.onnx"
        analysis_models.export_onnx(networks[kind], kind, path)
        card = common | {"name": name, "version": f"{args.seed}-{file_digest(path)}", "network": type(networks[kind]).__name__,
                         "training": records[kind]}
        if kind == "beat":
            card |= {"tempo_histogram": histogram, "fps": frames.BEAT_FPS}
        else:
            card |= {"fps": frames.HARMONY_FPS, "chord_qualities": list(frames.QUALITIES)}
        analysis_models.write_card(args.out / f"{name}.json", card)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), version {card['version']}")


if __name__ == "__main__":
    main()

"""The learned analysers as MLflow model families: `beat_tracker`, `chord_recognizer` and `key_tracker`.

Each family is registered like the project's other models (`training.registry`): an ONNX network (the
`onnx` flavor) with its analysis card (`analysis_card.json`: decoder settings, tempo prior, validation
scores, training data) in the run, and the `champion` alias moved by the same gate. Its score is its own
metric on the validation renders (held-out pieces through a held-out SoundFont, every listening condition):
beat F-measure, chord majmin, key. A first version must beat the DSP path on the same renders; a later one
must beat the champion re-scored there.

The shipped set (`pipeline_project/models`) is registered the first time the pipeline asks for its
analysers (`pipeline_models`), so a fresh clone's first run already analyses with champions. The pipeline
then uses the champion of every family that has one, downloaded once per version into a local cache, and the
DSP path for the others.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline_project.analysis import frames, learned
from pipeline_project.locks import exclusive
from pipeline_project.training.registry import RegistrationResult, Registry, render_card_checks, render_card_params

FAMILY_METRIC = {"beat_tracker": "beat_f", "chord_recognizer": "chord_majmin", "key_tracker": "key"}
OUTPUT_OF = {"beat_tracker": 0, "chord_recognizer": 0, "key_tracker": 2}  # which network output a family reads
ANALYSIS_CARD = "analysis_card.json"
MINIMUM_VALIDATION_RENDERS = 10
# A family replaces the DSP path, or its champion, only when its validation metric is better by at least this
# much: on a few dozen validation renders a smaller gain is noise (a key tracker 0.005 ahead of the DSP path on
# validation was 0.12 behind it on the benchmark's unheard pieces).
MINIMUM_GAIN = 0.005
SHIPPED_TAGS = {"source": "shipped with pipeline_project (make train-analysis)", "dataset": "analysis_corpus"}


def example_features(name: str) -> np.ndarray:
    """A fixed input for a family's network (three seconds of a click track in noise), for its signature and
    its reload check."""
    rng = np.random.default_rng(0)
    audio = 0.01 * rng.standard_normal(3 * frames.RATE).astype(np.float32)
    audio[:: frames.RATE // 2] += 1.0
    features = (
        frames.beat_features(audio) if learned.NETWORK_OF[name] == "beat_tracker" else frames.harmony_features(audio)
    )
    return np.ascontiguousarray(features[None], dtype=np.float32)


def onnx_output(model, features: np.ndarray, output: int) -> np.ndarray:
    """One output of an ONNX network (an `onnx.ModelProto`) for `features`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features})[output]


def score_on_renders(models: learned.ModelSet, paths: list[Path]) -> dict[str, float]:
    """A model set's validation scores on rendered corpus files (`training.analysis_corpus`), decoded with
    its own cards' settings: how a champion is re-scored on a challenger's validation renders. A family the
    set lacks gives flat activations, so only the metrics of the families it has mean anything."""
    from pipeline_project.training import analysis_corpus
    from pipeline_project.training.train_analysis import _mean_scores, score_example

    settings = learned.DecoderSettings.of(models)
    rows = []
    for path in paths:
        example = analysis_corpus.load(path)
        act = learned.activations_of_features(
            models, tuple(models.cards), example["beat_features"], example["harmony_features"]
        )
        beat_frames, harmony_frames = len(example["beat_features"]), len(example["harmony_features"])
        flat = {
            "beat": np.full(beat_frames, 0.5),
            "downbeat": np.full(beat_frames, 0.5),
            "chord": np.full((harmony_frames, frames.CHORD_CLASSES), -np.log(frames.CHORD_CLASSES)),
            "bass": np.full((harmony_frames, frames.NO_BASS + 1), -np.log(frames.NO_BASS + 1)),
            "key": np.full((harmony_frames, frames.KEY_CLASSES), -np.log(frames.KEY_CLASSES)),
        }
        rows.append(score_example(learned.decode(flat | act, example["meta"]["duration"], settings), example["meta"]))
    return _mean_scores(rows)


def register_model_set(
    registry: Registry,
    experiment: str,
    folder: Path,
    names: tuple[str, ...],
    tags: dict,
    minimum_gain: float,
    score_champion: Callable[[str], Callable] | None = None,
    log: Callable[[str], None] = print,
) -> list[RegistrationResult]:
    """Register the families `names` of the model set in `folder` as new versions, each through the champion
    gate on its own validation metric (against the DSP path's score where the family has no champion yet).
    `score_champion(name)` gives the function that re-scores that family's champion on the same renders."""
    import onnx

    models = learned.load(folder, names)
    results = []
    for name in names:
        card, metric = models.cards[name], FAMILY_METRIC[name]
        network = onnx.load(str(folder / card["file"]))
        example = example_features(name)
        prediction = onnx_output(network, example, OUTPUT_OF[name])
        scores, dsp = card["validation_scores"], card["dsp_validation_scores"]
        held_back = None
        if not card.get("promoted", False) and float(scores[metric]) >= float(dsp[metric]) + minimum_gain:
            held_back = (
                f"{scores[metric]:.4f} beats the DSP path's {dsp[metric]:.4f} over all but not in every condition"
            )
        metrics = {f"validation_{k}": v for k, v in scores.items()} | {f"dsp_validation_{k}": v for k, v in dsp.items()}
        per_condition = card.get("validation_by_condition", {})
        for system, prefix in (("learned", "validation"), ("dsp", "dsp_validation")):
            metrics |= {
                f"{prefix}_{condition}_{k}": v
                for condition, values in per_condition.get(system, {}).items()
                for k, v in values.items()
            }

        def predict(model, features, output=OUTPUT_OF[name]):
            return onnx_output(model, features, output)

        result = registry.log_and_register(
            model=network,
            flavor="onnx",
            model_name=name,
            experiment=experiment,
            params=render_card_params(card, "analysis_version"),
            metrics=metrics,
            tags=tags | {"analysis_version": str(card.get("version"))},
            input_example=example,
            predict=predict,
            score=float(scores[metric]),
            score_champion=score_champion(name) if score_champion else _no_rescoring(name),
            minimum_gain=minimum_gain,
            json_artifacts={ANALYSIS_CARD: card},
            **render_card_checks(card, predict, example, prediction, metrics, MINIMUM_VALIDATION_RENDERS),
            performance={"validation": scores, "dsp_validation": dsp, "metric": metric, "by_condition": per_condition},
            baseline=("DSP path", float(dsp[metric])),
            held_back=held_back,
        )
        log(
            f"{name}: registered version {result.version} ({card.get('version')}), validation {metric} {result.score}: "
            f"{'champion' if result.promoted else 'challenger'} ({result.reason})"
        )
        results.append(result)
    return results


def _no_rescoring(name: str) -> Callable:
    def refuse(_champion) -> float:
        raise ValueError(f"{name} has a champion, and this set brings no validation renders to re-score it on")

    return refuse


def register_shipped(
    registry: Registry, experiment: str, cache: Path, log: Callable[[str], None] = print
) -> list[RegistrationResult]:
    """Register the shipped set's families that have no version in the registry yet (none, after the first
    time), each through the gate against the DSP path's validation score."""
    if not learned.available():
        return []
    with exclusive(cache / ".lock"):  # songs are analysed in parallel processes
        missing = tuple(name for name in learned.MODEL_NAMES if not registry.versions(name))
        if not missing:
            return []
        log(f"registering the shipped learned analysers ({', '.join(missing)}) in MLflow")
        return register_model_set(
            registry, experiment, learned.SHIPPED_MODELS, missing, SHIPPED_TAGS, MINIMUM_GAIN, log=log
        )


def _champion_files(registry: Registry, name: str, version, cache: Path) -> Path:
    """A folder with the champion's network and analysis card (the card marked promoted, with its registry
    version and run), downloaded once per version."""
    folder = cache / f"{name}-{version.version}-{version.run_id[:12]}"
    if (folder / f"{name}.json").is_file():
        return folder
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        model_dir = registry.model_files(name, version.version, Path(tmp) / "model")
        staging = Path(tmp) / "staging"
        staging.mkdir()
        shutil.copyfile(model_dir / "model.onnx", staging / f"{name}.onnx")
        card = json.loads(Path(registry.client.download_artifacts(version.run_id, ANALYSIS_CARD, tmp)).read_text())
        card |= {
            "file": f"{name}.onnx",
            "promoted": True,
            "registry_version": str(version.version),
            "mlflow_run_id": version.run_id,
        }
        (staging / f"{name}.json").write_text(json.dumps(card, indent=1))
        try:
            staging.rename(folder)
        except OSError:  # another process got there first
            pass
    return folder


def champion_model_set(registry: Registry, cache: Path) -> learned.ModelSet | None:
    """The champions of the families that have one, as one model set (None when no family has a champion)."""
    champions = {name: registry.champion_version(name) for name in learned.MODEL_NAMES}
    champions = {name: version for name, version in champions.items() if version is not None}
    if not champions:
        return None
    with exclusive(cache / ".lock"):  # songs are analysed in parallel processes
        sources = {name: _champion_files(registry, name, version, cache) for name, version in champions.items()}
        # Named by registry version and run: a store made anew (same versions, other runs) gets its own set.
        folder = cache / (
            "set-" + "-".join(f"{name}{version.version}.{version.run_id[:8]}" for name, version in champions.items())
        )
        if not folder.is_dir():
            staging = Path(tempfile.mkdtemp(dir=cache))
            cards = {name: json.loads((source / f"{name}.json").read_text()) for name, source in sources.items()}
            chord = cards.get("chord_recognizer", {}).get("version")
            for name, card in cards.items():
                if name == "key_tracker" and card.get("version") == chord:
                    card["file"] = "chord_recognizer.onnx"  # the same network: heard once per song, both heads read
                else:
                    shutil.copyfile(sources[name] / f"{name}.onnx", staging / f"{name}.onnx")
                (staging / f"{name}.json").write_text(json.dumps(card))
            staging.rename(folder)
    return learned.load(folder, tuple(champions))


def pipeline_models(
    registry: Registry, experiment: str, cache: Path, log: Callable[[str], None] = print
) -> learned.ModelSet | None:
    """The learned analysers song_analysis uses: the registry's champions, after registering the shipped set
    where a family has no version yet."""
    register_shipped(registry, experiment, cache, log)
    return champion_model_set(registry, cache)

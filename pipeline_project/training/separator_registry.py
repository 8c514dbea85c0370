"""The learned separator as an MLflow model family, `stem_separator`, registered like the learned analysers
(`training.analysis_registry`): the ONNX mask network (`onnx` flavor) with its card (`separator_card.json`) in the
run, and the `champion` alias moved by the registry's gate. Its score is the mean SDR over the four stems on the
validation renders (held-out pieces through held-out SoundFonts, every listening condition); a first version must
beat the DSP fallback there, and must not be worse on any stem in any condition (the card's `promoted`).

The shipped separator (`pipeline_project/models/stem_separator.onnx`) is registered the first time the pipeline
asks for it, so a fresh clone's first run already separates with a champion. Separation then uses the champion,
downloaded once per version into a local cache.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline_project.locks import exclusive
from pipeline_project.separation import learned
from pipeline_project.training.registry import RegistrationResult, Registry, render_card_checks, render_card_params
from pipeline_project.training.train_separator import mean_sdr

FAMILY = "stem_separator"
CARD = "separator_card.json"
MINIMUM_VALIDATION_RENDERS = 10
MINIMUM_GAIN_DB = 0.1  # below a tenth of a dB, on a few dozen renders, a new champion is noise
SHIPPED_TAGS = {"source": "shipped with pipeline_project (make train-separator)", "dataset": "separator_corpus"}


def example_features() -> np.ndarray:
    """A fixed input for the network's signature and reload check: two seconds of clicks over a chord in noise."""
    rng = np.random.default_rng(0)
    seconds = np.arange(2 * learned.SAMPLE_RATE) / learned.SAMPLE_RATE
    tone = sum(0.1 * np.sin(2 * np.pi * f * seconds) for f in (110.0, 220.0, 277.2, 329.6))
    audio = (tone + 0.01 * rng.standard_normal(len(seconds))).astype(np.float32)
    audio[:: learned.SAMPLE_RATE // 2] += 1.0
    import librosa

    spectra = librosa.stft(np.stack([audio, 0.9 * audio]), n_fft=learned.N_FFT, hop_length=learned.HOP)
    return learned.features(spectra)


def onnx_masks(model, features: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features})[0]


def register_separator(
    registry: Registry,
    experiment: str,
    path: Path,
    tags: dict,
    minimum_gain: float = MINIMUM_GAIN_DB,
    score_champion: Callable | None = None,
    log: Callable[[str], None] = print,
) -> RegistrationResult:
    """Register the network at `path` (with its card beside it) as a new version of `stem_separator`, through the
    champion gate on validation mean SDR. A version whose card is not promoted (worse than the DSP fallback on a
    stem in a condition) is registered as a challenger whatever its mean. `score_champion(model)` re-scores the
    champion on the same renders; without it, a family that has a champion refuses the registration."""
    import onnx

    card = json.loads(path.with_suffix(".json").read_text())
    network = onnx.load(str(path))
    example = example_features()
    prediction = onnx_masks(network, example)
    ours, dsp = card["validation_sdr"], card["dsp_validation_sdr"]
    score, baseline = mean_sdr(ours), mean_sdr(dsp)
    held_back = (
        None
        if card.get("promoted")
        else f"{score:.2f} dB against the DSP fallback's {baseline:.2f} dB, worst stem in a condition "
        f"{card['worst_stem_gain_db']:+.2f} dB: not better on every stem in every condition"
    )
    metrics = {
        f"validation_{condition}_{stem}_sdr": value
        for condition, table in ours.items()
        for stem, value in table.items()
    }
    metrics |= {
        f"dsp_validation_{condition}_{stem}_sdr": value
        for condition, table in dsp.items()
        for stem, value in table.items()
    }
    metrics |= {
        "validation_mean_sdr": score,
        "mean_gain_db": card["mean_gain_db"],
        "worst_stem_gain_db": card["worst_stem_gain_db"],
    }

    def refuse(_champion) -> float:
        raise ValueError(
            f"{FAMILY} has a champion, and this registration brings no validation renders to re-score it on"
        )

    result = registry.log_and_register(
        model=network,
        flavor="onnx",
        model_name=FAMILY,
        experiment=experiment,
        params={
            **render_card_params(card, "separator_version"),
            "sample_rate": card.get("sample_rate"),
            "n_fft": card.get("n_fft"),
            "hop": card.get("hop"),
        },
        metrics=metrics,
        tags=tags | {"separator_version": str(card.get("version"))},
        input_example=example,
        predict=onnx_masks,
        score=score,
        score_champion=score_champion or refuse,
        minimum_gain=minimum_gain,
        json_artifacts={CARD: card},
        **render_card_checks(card, onnx_masks, example, prediction, metrics, MINIMUM_VALIDATION_RENDERS),
        performance={"validation_sdr": ours, "dsp_validation_sdr": dsp, "metric": "mean SDR over the stems (dB)"},
        baseline=("DSP fallback", baseline),
        held_back=held_back,
    )
    log(
        f"{FAMILY}: registered version {result.version} ({card.get('version')}), validation mean SDR {score:.2f} dB: "
        f"{'champion' if result.promoted else 'challenger'} ({result.reason})"
    )
    return result


def register_shipped(
    registry: Registry, experiment: str, cache: Path, log: Callable[[str], None] = print
) -> RegistrationResult | None:
    """Register the shipped separator when the family has no version yet (never again after the first time)."""
    if not learned.SHIPPED_SEPARATOR.is_file():
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive(cache / ".lock"):  # songs are separated in parallel processes
        if registry.versions(FAMILY):
            return None
        log(f"registering the shipped learned separator ({FAMILY}) in MLflow")
        return register_separator(registry, experiment, learned.SHIPPED_SEPARATOR, SHIPPED_TAGS, log=log)


def champion_separator(registry: Registry, cache: Path) -> learned.LoadedSeparator | None:
    """The champion's network and card, downloaded once per version into `cache`; None without a champion."""
    version = registry.champion_version(FAMILY)
    if version is None:
        return None
    folder = cache / f"{FAMILY}-{version.version}-{version.run_id[:12]}"
    if not (folder / f"{FAMILY}.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with exclusive(cache / ".lock"), tempfile.TemporaryDirectory(dir=cache) as tmp:
            if not (folder / f"{FAMILY}.json").is_file():
                model_dir = registry.model_files(FAMILY, version.version, Path(tmp) / "model")
                staging = Path(tmp) / "staging"
                staging.mkdir()
                shutil.copyfile(model_dir / "model.onnx", staging / f"{FAMILY}.onnx")
                card = json.loads(Path(registry.client.download_artifacts(version.run_id, CARD, tmp)).read_text())
                card |= {"registry_version": str(version.version), "mlflow_run_id": version.run_id}
                (staging / f"{FAMILY}.json").write_text(json.dumps(card, indent=1))
                staging.rename(folder)
    return learned.load_separator(folder / f"{FAMILY}.onnx")


def pipeline_separator(
    registry: Registry, experiment: str, cache: Path, log: Callable[[str], None] = print
) -> learned.LoadedSeparator | None:
    """The learned separator song_stems uses: the registry's champion, after registering the shipped one where
    the family has no version yet."""
    register_shipped(registry, experiment, cache, log)
    return champion_separator(registry, cache)

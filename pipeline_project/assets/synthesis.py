import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field

from pipeline_project.assets.metadata import markdown_table
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.audio.features import LogMelSettings, log_mel, random_windows
from pipeline_project.audio.io import read_audio, write_audio, write_mp3, write_text_atomic
from pipeline_project.augmentation.chains import DEFAULT_COMBINATIONS, PRESETS, NoisePool, apply_chain, sample_chain
from pipeline_project.resources import RendererResource, StorageResource
from pipeline_project.synthesis.examples import all_sources, example_specs, render_example
from pipeline_project.synthesis.performance import stretch_labels

LISTENING_SAMPLE_SECONDS = 60.0


class RenderingConfig(dg.Config):
    seed: int = Field(20260101, description="Seed of every choice: tempi, keys, progressions, voices, performance.")
    renderings_per_source: int = Field(2, description="Examples rendered from each score source and groove style.")
    score_bars: int = Field(4, description="Length of score excerpts, in 4/4 bars.")
    groove_bars: int = Field(8, description="Length of groove examples, in bars.")


class AugmentationConfig(dg.Config):
    seed: int = Field(20260102, description="Seed of every augmentation chain.")
    variants_per_example: int = Field(1, description="Augmented variants made from each rendered example.")
    combinations: list[list[str]] = Field(
        [list(c) for c in DEFAULT_COMBINATIONS],
        description=f"Preset combinations drawn in turn; presets: {', '.join(PRESETS)}.")
    n_mels: int = Field(128, description="Mel bands of the log-mel features.")
    hop_length: int = Field(512, description="Hop of the log-mel features, in samples at 22.05 kHz.")
    windows_per_example: int = Field(4, description="Fixed windows drawn per example.")
    window_min_s: float = Field(1.0, description="Shortest window, in seconds.")
    window_max_s: float = Field(3.0, description="Longest window, in seconds.")
    listening_samples: bool = Field(True, description="Write a 60 s listening sample per preset next to the dataset.")


@dg.asset(group_name="synthesis", kinds={"fluidsynth", "audio"}, code_version="2",
          # Requested once when missing (on_missing only reacts to assets that go missing later).
          automation_condition=dg.AutomationCondition.missing().newly_true() & ~dg.AutomationCondition.in_progress())
@retry_transient_failures
def rendered_examples(context: dg.AssetExecutionContext, config: RenderingConfig, storage: StorageResource,
                      renderer: RendererResource) -> dg.MaterializeResult:
    """Music21 corpus pieces (MusicXML, **kern, ABC), the user's scores and MIDI files in `scores/`, and the
    generated groove library, rendered part by part with FluidSynth over every available SoundFont with
    same-family instrument choices, rubato, jitter, dynamics and detuning. Notes, beats, downbeats, tempo
    curve, chords, key, time signature, drum articulations (and **kern text) are aligned with the audio."""
    storage.fetch(storage.soundfonts)
    catalog, presets = renderer.soundfonts(), renderer.presets()
    sources = all_sources(storage.fetch(storage.scores))
    specs = example_specs(sources, config.seed, config.renderings_per_source, config.score_bars, config.groove_bars)
    out_dir = storage.synthetic_dir() / "rendered"
    started = time.perf_counter()
    entries, failures, audio_seconds = [], [], 0.0
    for index, spec in enumerate(specs, 1):
        try:
            example = render_example(spec, catalog, presets)
        except Exception as exc:  # one unreadable user score must not cost the other examples
            failures.append({"source": spec.source.locator, "reason": f"{type(exc).__name__}: {exc}"})
            context.log.error(f"[{index}/{len(specs)}] {spec.source.locator}: cannot render ({exc})")
            continue
        example_dir = out_dir / spec.example_key
        for stem, samples in example.audio.stems.items():
            write_audio(example_dir / "stems" / f"{stem}.flac", samples, example.audio.sample_rate)
        write_audio(example_dir / "mix.flac", example.audio.mix, example.audio.sample_rate)
        write_text_atomic(example_dir / "labels.json", json.dumps(example.labels()))
        voices = {part: f"{v.family} {v.program}@{v.soundfont}" for part, v in example.performance.voices.items()}
        entries.append({"example_key": spec.example_key, "source_id": spec.source.source_id, "format": spec.source.format,
                        "soundfonts": example.audio.soundfonts, "voices": voices, "tempo_bpm": spec.tempo_bpm,
                        "duration_s": example.performance.duration})
        audio_seconds += example.performance.duration
        context.log.info(f"[{index}/{len(specs)}] {spec.example_key} from {spec.source.source_id}: {', '.join(voices.values())}")
    write_text_atomic(out_dir / "sources.json", json.dumps([s.to_dict() for s in sources], indent=1))
    write_text_atomic(out_dir / "manifest.json", json.dumps({"seed": config.seed, "examples": entries, "failures": failures}, indent=1))
    storage.publish(out_dir)
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(metadata={
        "examples": len(entries),
        "failed_sources": len(failures),
        "audio_seconds": round(audio_seconds, 1),
        "render_seconds": round(seconds, 1),
        "x_real_time": round(audio_seconds / max(seconds, 1e-9), 1),
        "soundfonts": ", ".join(catalog),
        "seed": config.seed,
        "sources": markdown_table(["source", "format", "origin", "licence"], [[s.source_id if s.kind != "user" else s.source_id[:21],
                                                                          s.format, s.origin, s.licence] for s in sources]),
        "examples_table": markdown_table(["example", "source", "SoundFonts", "programs (part: family program@SoundFont)"],
                                    [[e["example_key"], e["source_id"][:40], ", ".join(e["soundfonts"]),
                                      "; ".join(f"{p}: {v}" for p, v in e["voices"].items())] for e in entries]),
    })


def _noise_pool(rendered_dir: Path, keys: list[str]) -> NoisePool:
    """Vocal stems of the rendered examples: the voices babble and crowd noise are made of."""
    clips = {}
    for key in keys:
        vocals, _ = read_audio(rendered_dir / key / "stems" / "vocals.flac")
        if np.any(vocals):
            clips[key] = vocals
    return NoisePool(clips)


def _write_features(path: Path, audio: np.ndarray, sample_rate: int, settings: LogMelSettings) -> None:
    from pipeline_project.audio.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, log_mel(audio, sample_rate, settings))


@dg.asset(group_name="synthesis", kinds={"pedalboard", "audio"}, code_version="2", deps=[rendered_examples],
          automation_condition=dg.AutomationCondition.eager())
@retry_transient_failures
def augmented_examples(context: dg.AssetExecutionContext, config: AugmentationConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Every rendered mix through a chain of named augmentation presets (simulated rooms up to an arena,
    noise at a set SNR including babble and crowd made from the rendered corpus, mic and phone colouring,
    compression, clipping and saturation, MP3, concert, small time-stretch and pitch shift). Labels are
    moved to match, every parameter and seed is recorded, and applying the record again gives the same
    samples. Log-mel features and random 1-3 s windows are computed for clean and augmented examples."""
    synthetic = storage.fetch(storage.synthetic_dir() / "rendered").parent
    rendered_dir, out_dir, features_dir = synthetic / "rendered", synthetic / "augmented", synthetic / "features"
    manifest = json.loads((rendered_dir / "manifest.json").read_text())
    keys = [e["example_key"] for e in manifest["examples"]]
    pool = _noise_pool(rendered_dir, keys)
    settings = LogMelSettings(n_mels=config.n_mels, hop_length=config.hop_length)
    started, audio_seconds = time.perf_counter(), 0.0
    entries, table_rows = [], []
    for index, key in enumerate(keys):
        mix, sample_rate = read_audio(rendered_dir / key / "mix.flac")
        labels = json.loads((rendered_dir / key / "labels.json").read_text())
        _write_features(features_dir / f"{key}.npy", mix, sample_rate, settings)
        entries.append({"key": key, "variant": "clean", "source_example": key, "chain": None,
                        "windows": random_windows(labels["duration"], config.seed + index, config.windows_per_example,
                                                  config.window_min_s, config.window_max_s)})
        for variant in range(config.variants_per_example):
            presets = config.combinations[(index * config.variants_per_example + variant) % len(config.combinations)]
            chain = sample_chain(presets, config.seed * 1000 + index * 10 + variant, pool.ids())
            augmented = apply_chain(mix, sample_rate, chain, pool)
            aug_key = f"{key}-a{variant}"
            aug_labels = stretch_labels(labels, augmented.time_scale, augmented.tuning_cents)
            write_audio(out_dir / aug_key / "mix.flac", augmented.audio, sample_rate)
            write_text_atomic(out_dir / aug_key / "labels.json", json.dumps(aug_labels))
            record = {"augmented_key": aug_key, "source_example": key, "chain": chain,
                      "time_scale": augmented.time_scale, "tuning_cents": augmented.tuning_cents}
            write_text_atomic(out_dir / aug_key / "record.json", json.dumps(record, indent=1))
            _write_features(features_dir / f"{aug_key}.npy", augmented.audio, sample_rate, settings)
            entries.append({"key": aug_key, "variant": "augmented", "source_example": key, "chain": chain,
                            "windows": random_windows(aug_labels["duration"], config.seed + index * 100 + variant + 1,
                                                      config.windows_per_example, config.window_min_s, config.window_max_s)})
            audio_seconds += mix.shape[1] / sample_rate
            table_rows.append([aug_key, key, " + ".join(presets), "; ".join(_describe(s) for s in chain["steps"])])
        context.log.info(f"[{index + 1}/{len(keys)}] augmented {key}")
    write_text_atomic(out_dir / "manifest.json", json.dumps({"seed": config.seed, "features": settings.to_dict(),
                                                             "examples": entries}, indent=1))
    storage.publish(features_dir, out_dir)
    listening = _listening_samples(storage, rendered_dir, keys, pool, config.seed) if config.listening_samples else []
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(metadata={
        "examples": len(entries),
        "augmented": len(table_rows),
        "augment_seconds": round(seconds, 1),
        "x_real_time": round(audio_seconds / max(seconds, 1e-9), 1),
        "seed": config.seed,
        "log_mel": dg.MetadataValue.json(settings.to_dict()),
        "listening_samples": dg.MetadataValue.md("\n".join(f"- `{p}`" for p in listening) or "none"),
        "chains": markdown_table(["augmented example", "from", "presets", "chain"], table_rows),
    })


def _describe(step: dict) -> str:
    name = step["name"]
    if name == "room":
        return f"room {step['room']['room_type']} RT60 {step['room']['rt60_s']} s"
    if name == "noise":
        return f"{step['kind']} noise {step['snr_db']:+.0f} dB SNR"
    if name == "time_stretch":
        return f"stretch x{step['rate']} {step['cents']:+.1f} cents"
    details = ", ".join(f"{k} {v}" for k, v in step.items() if k not in ("name", "peaks") and not isinstance(v, (list, dict)))
    return f"{name} ({details})" if details else name


def _listening_samples(storage: StorageResource, rendered_dir: Path, keys: list[str], pool: NoisePool, seed: int) -> list[str]:
    """60 s of rendered mixes end to end, through each preset alone (and clean), as MP3s beside the dataset."""
    pieces, total, sample_rate = [], 0, 44_100
    for key in keys:
        mix, sample_rate = read_audio(rendered_dir / key / "mix.flac")
        pieces.append(mix)
        total += mix.shape[1]
        if total >= LISTENING_SAMPLE_SECONDS * sample_rate:
            break
    if not pieces:
        return []
    clean = np.concatenate(pieces, axis=1)[:, : int(LISTENING_SAMPLE_SECONDS * sample_rate)]
    out_dir = storage.dataset_dir("synthetic_examples") / "listening"
    written = []
    for preset in ("clean", *PRESETS):
        audio = clean if preset == "clean" else apply_chain(clean, sample_rate, sample_chain([preset], seed, pool.ids()), pool).audio
        path = out_dir / f"{preset}.mp3"
        write_mp3(path, audio, sample_rate, {})
        written.append(str(path.relative_to(storage.root)))
    storage.publish(out_dir)
    return written


def rendered_example_dirs(storage: StorageResource) -> list[Path]:
    manifest = json.loads((storage.synthetic_dir() / "rendered" / "manifest.json").read_text())
    return [storage.synthetic_dir() / "rendered" / e["example_key"] for e in manifest["examples"]]

import json
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipeline_project.assets.metadata import markdown_table
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.audio.features import LogMelSettings
from pipeline_project.augmentation.chains import DEFAULT_COMBINATIONS, PRESETS
from pipeline_project.augmentation.corpus import (
    AugmentationJob,
    augment_example,
    load_noise_pool,
    write_listening_sample,
)
from pipeline_project.files import write_text_atomic
from pipeline_project.parallel import map_in_processes
from pipeline_project.resources import RendererResource, StorageResource
from pipeline_project.synthesis.examples import all_sources, example_specs, render_to_folder


class RenderingConfig(dg.Config):
    seed: int = Field(20260101, description="Seed of every choice: tempi, keys, progressions, voices, performance.")
    renderings_per_source: int = Field(2, description="Examples rendered from each score source and groove style.")
    score_bars: int = Field(4, description="Length of score excerpts, in 4/4 bars.")
    groove_bars: int = Field(8, description="Length of groove examples, in bars.")
    workers: int = Field(
        0,
        description="Processes rendering at once; 0: one per available CPU core. The examples "
        "are the same whatever the number.",
    )


class AugmentationConfig(dg.Config):
    seed: int = Field(20260102, description="Seed of every augmentation chain.")
    variants_per_example: int = Field(1, description="Augmented variants made from each rendered example.")
    combinations: list[list[str]] = Field(
        [list(c) for c in DEFAULT_COMBINATIONS],
        description=f"Preset combinations drawn in turn; presets: {', '.join(PRESETS)}.",
    )
    n_mels: int = Field(128, description="Mel bands of the log-mel features.")
    hop_length: int = Field(512, description="Hop of the log-mel features, in samples at 22.05 kHz.")
    windows_per_example: int = Field(4, description="Fixed windows drawn per example.")
    window_min_s: float = Field(1.0, description="Shortest window, in seconds.")
    window_max_s: float = Field(3.0, description="Longest window, in seconds.")
    listening_samples: bool = Field(True, description="Write a 60 s listening sample per preset next to the dataset.")
    workers: int = Field(
        0,
        description="Processes augmenting at once; 0: one per available CPU core. The examples "
        "are the same whatever the number.",
    )


@dg.asset(
    group_name="synthesis",
    kinds={"fluidsynth", "audio"},
    code_version="2",
    # Requested once when missing (on_missing only reacts to assets that go missing later).
    automation_condition=dg.AutomationCondition.missing().newly_true() & ~dg.AutomationCondition.in_progress(),
)
@retry_transient_failures
def rendered_examples(
    context: dg.AssetExecutionContext, config: RenderingConfig, storage: StorageResource, renderer: RendererResource
) -> dg.MaterializeResult:
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
    jobs = [(spec, catalog, presets, out_dir) for spec in specs]
    for index, (spec, result) in enumerate(zip(specs, map_in_processes(render_to_folder, jobs, config.workers)), 1):
        if "failure" in result:
            failures.append(result["failure"])
            context.log.error(
                f"[{index}/{len(specs)}] {spec.source.locator}: cannot render ({result['failure']['reason']})"
            )
            continue
        entries.append(result)
        audio_seconds += result["duration_s"]
        context.log.info(
            f"[{index}/{len(specs)}] {spec.example_key} from {spec.source.source_id}: {', '.join(result['voices'].values())}"
        )
    write_text_atomic(out_dir / "sources.json", json.dumps([s.to_dict() for s in sources], indent=1))
    write_text_atomic(
        out_dir / "manifest.json",
        json.dumps({"seed": config.seed, "examples": entries, "failures": failures}, indent=1),
    )
    storage.publish(out_dir)
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(
        metadata={
            "examples": len(entries),
            "failed_sources": len(failures),
            "audio_seconds": round(audio_seconds, 1),
            "render_seconds": round(seconds, 1),
            "x_real_time": round(audio_seconds / max(seconds, 1e-9), 1),
            "soundfonts": ", ".join(catalog),
            "seed": config.seed,
            "sources": markdown_table(
                ["source", "format", "origin", "licence"],
                [
                    [s.source_id if s.kind != "user" else s.source_id[:21], s.format, s.origin, s.licence]
                    for s in sources
                ],
            ),
            "examples_table": markdown_table(
                ["example", "source", "SoundFonts", "programs (part: family program@SoundFont)"],
                [
                    [
                        e["example_key"],
                        e["source_id"][:40],
                        ", ".join(e["soundfonts"]),
                        "; ".join(f"{p}: {v}" for p, v in e["voices"].items()),
                    ]
                    for e in entries
                ],
            ),
        }
    )


@dg.asset(
    group_name="synthesis",
    kinds={"pedalboard", "audio"},
    code_version="2",
    deps=[rendered_examples],
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_transient_failures
def augmented_examples(
    context: dg.AssetExecutionContext, config: AugmentationConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Every rendered mix through a chain of named augmentation presets (simulated rooms up to an arena,
    noise at a set SNR including babble and crowd made from the rendered corpus, mic and phone colouring,
    compression, clipping and saturation, MP3, concert, small time-stretch and pitch shift). Labels are
    moved to match, every parameter and seed is recorded, and applying the record again gives the same
    samples. Log-mel features and random 1-3 s windows are computed for clean and augmented examples."""
    synthetic = storage.fetch(storage.synthetic_dir() / "rendered").parent
    rendered_dir, out_dir, features_dir = synthetic / "rendered", synthetic / "augmented", synthetic / "features"
    manifest = json.loads((rendered_dir / "manifest.json").read_text())
    keys = [e["example_key"] for e in manifest["examples"]]
    settings = LogMelSettings(n_mels=config.n_mels, hop_length=config.hop_length)
    started, audio_seconds = time.perf_counter(), 0.0
    entries, table_rows = [], []
    jobs = [
        AugmentationJob(
            index,
            key,
            rendered_dir,
            out_dir,
            features_dir,
            settings,
            config.seed,
            config.variants_per_example,
            config.combinations,
            config.windows_per_example,
            config.window_min_s,
            config.window_max_s,
        )
        for index, key in enumerate(keys)
    ]
    pool_setup = {"initializer": load_noise_pool, "initargs": (rendered_dir, keys)}
    for index, result in enumerate(map_in_processes(augment_example, jobs, config.workers, **pool_setup), 1):
        entries += result["entries"]
        audio_seconds += result["audio_seconds"]
        table_rows += [
            [aug_key, keys[index - 1], " + ".join(presets), "; ".join(_describe(s) for s in chain["steps"])]
            for aug_key, presets, chain in result["variants"]
        ]
        context.log.info(f"[{index}/{len(keys)}] augmented {keys[index - 1]}")
    write_text_atomic(
        out_dir / "manifest.json",
        json.dumps({"seed": config.seed, "features": settings.to_dict(), "examples": entries}, indent=1),
    )
    storage.publish(features_dir, out_dir)
    listening = []
    if config.listening_samples:
        listening_dir = storage.dataset_dir("synthetic_examples") / "listening"
        samples = [
            (preset, rendered_dir, tuple(keys), config.seed, listening_dir / f"{preset}.mp3")
            for preset in ("clean", *PRESETS)
        ]
        listening = [
            str(path.relative_to(storage.root))
            for path in map_in_processes(write_listening_sample, samples, config.workers, **pool_setup)
            if path
        ]
        storage.publish(listening_dir)
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(
        metadata={
            "examples": len(entries),
            "augmented": len(table_rows),
            "augment_seconds": round(seconds, 1),
            "x_real_time": round(audio_seconds / max(seconds, 1e-9), 1),
            "seed": config.seed,
            "log_mel": dg.MetadataValue.json(settings.to_dict()),
            "listening_samples": dg.MetadataValue.md("\n".join(f"- `{p}`" for p in listening) or "none"),
            "chains": markdown_table(["augmented example", "from", "presets", "chain"], table_rows),
        }
    )


def _describe(step: dict) -> str:
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


def rendered_example_dirs(storage: StorageResource) -> list[Path]:
    manifest = json.loads((storage.synthetic_dir() / "rendered" / "manifest.json").read_text())
    return [storage.synthetic_dir() / "rendered" / e["example_key"] for e in manifest["examples"]]

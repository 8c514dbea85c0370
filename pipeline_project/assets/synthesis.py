import json

import dagster as dg
from pydantic import Field

from pipeline_project.assets.metadata import markdown_table
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.audio.features import LogMelSettings
from pipeline_project.augmentation.chains import DEFAULT_COMBINATIONS, PRESETS, describe_step
from pipeline_project.augmentation.corpus import augment_corpus, write_listening_samples
from pipeline_project.layout import ExampleFolder
from pipeline_project.resources import RendererResource, StorageResource
from pipeline_project.synthesis.examples import all_sources, example_specs, render_corpus


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
    corpus = storage.synthetic()
    done = render_corpus(
        corpus,
        sources,
        specs,
        catalog,
        presets,
        config.seed,
        config.workers,
        log=context.log.info,
        log_error=context.log.error,
    )
    storage.publish(corpus.rendered)
    return dg.MaterializeResult(
        metadata={
            "examples": len(done.entries),
            "failed_sources": len(done.failures),
            "audio_seconds": round(done.audio_seconds, 1),
            "render_seconds": round(done.seconds, 1),
            "x_real_time": round(done.audio_seconds / max(done.seconds, 1e-9), 1),
            "soundfonts": ", ".join(catalog),
            "seed": config.seed,
            "sources": _sources_table(sources),
            "examples_table": _examples_table(done.entries),
        }
    )


def _sources_table(sources) -> dg.MetadataValue:
    rows = [[s.source_id if s.kind != "user" else s.source_id[:21], s.format, s.origin, s.licence] for s in sources]
    return markdown_table(["source", "format", "origin", "licence"], rows)


def _examples_table(entries: list[dict]) -> dg.MetadataValue:
    rows = [
        [
            e["example_key"],
            e["source_id"][:40],
            ", ".join(e["soundfonts"]),
            "; ".join(f"{p}: {v}" for p, v in e["voices"].items()),
        ]
        for e in entries
    ]
    return markdown_table(["example", "source", "SoundFonts", "programs (part: family program@SoundFont)"], rows)


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
    corpus = storage.synthetic()
    storage.fetch(corpus.rendered)
    settings = LogMelSettings(n_mels=config.n_mels, hop_length=config.hop_length)
    windows = (config.windows_per_example, config.window_min_s, config.window_max_s)
    done = augment_corpus(
        corpus,
        settings,
        config.seed,
        config.variants_per_example,
        config.combinations,
        windows,
        config.workers,
        log=context.log.info,
    )
    storage.publish(corpus.features, corpus.augmented)
    listening = _listening_samples(storage, corpus, config) if config.listening_samples else []
    return dg.MaterializeResult(
        metadata={
            "examples": len(done.entries),
            "augmented": len(done.variants),
            "augment_seconds": round(done.seconds, 1),
            "x_real_time": round(done.audio_seconds / max(done.seconds, 1e-9), 1),
            "seed": config.seed,
            "log_mel": dg.MetadataValue.json(settings.to_dict()),
            "listening_samples": dg.MetadataValue.md("\n".join(f"- `{p}`" for p in listening) or "none"),
            "chains": _chains_table(done.variants),
        }
    )


def _listening_samples(storage: StorageResource, corpus, config: AugmentationConfig) -> list[str]:
    folder = storage.dataset_dir("synthetic_examples") / "listening"
    written = write_listening_samples(corpus, folder, list(PRESETS), config.seed, config.workers)
    storage.publish(folder)
    return [str(path.relative_to(storage.root)) for path in written]


def _chains_table(variants) -> dg.MetadataValue:
    rows = [
        [key, source, " + ".join(presets), "; ".join(describe_step(step) for step in chain["steps"])]
        for key, source, presets, chain in variants
    ]
    return markdown_table(["augmented example", "from", "presets", "chain"], rows)


def rendered_examples_of(storage: StorageResource) -> list[ExampleFolder]:
    """The rendered examples the rendered corpus's manifest lists (fetch the corpus first)."""
    corpus = storage.synthetic()
    manifest = json.loads(corpus.rendered_manifest.read_text())
    return [corpus.rendered_example(e["example_key"]) for e in manifest["examples"]]

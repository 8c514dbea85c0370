import json
import time
from pathlib import Path

import dagster as dg

from pipeline_project.audio.io import read_audio, write_audio, write_text_atomic
from pipeline_project.augmentation.chains import apply_chain, sample_chain
from pipeline_project.resources import RendererResource, StorageResource
from pipeline_project.synthesis.examples import example_specs, render_example


class RenderingConfig(dg.Config):
    seed: int = 20260101
    grooves_per_style: int = 4
    excerpt_quarter_notes: float = 16.0
    groove_bars: int = 6


class AugmentationConfig(dg.Config):
    seed: int = 20260102
    variants_per_example: int = 1


@dg.asset(group_name="synthesis", kinds={"fluidsynth", "audio"}, code_version="1",
          # Requested once when missing (on_missing only reacts to assets that go missing later).
          automation_condition=dg.AutomationCondition.missing().newly_true() & ~dg.AutomationCondition.in_progress())
def rendered_examples(context: dg.AssetExecutionContext, config: RenderingConfig, storage: StorageResource,
                      renderer: RendererResource) -> dg.MaterializeResult:
    """Corpus excerpts and generated grooves rendered stem by stem with FluidSynth, with human timing, velocity
    and detuning; note, beat, chord and key labels are aligned with the audio by construction."""
    soundfonts = renderer.soundfonts()
    specs = example_specs(config.seed, soundfonts, config.grooves_per_style, config.excerpt_quarter_notes, config.groove_bars)
    out_dir = storage.synthetic_dir() / "rendered"
    started = time.perf_counter()
    entries, audio_seconds = [], 0.0
    for index, spec in enumerate(specs, 1):
        arrangement, performance, audio = render_example(spec)
        example_dir = out_dir / spec.example_key
        for stem, samples in audio.stems.items():
            write_audio(example_dir / "stems" / f"{stem}.flac", samples, audio.sample_rate)
        write_audio(example_dir / "mix.flac", audio.mix, audio.sample_rate)
        labels = performance.labels() | {"spec": spec.to_dict(), "origin": arrangement.origin, "licence": arrangement.licence,
                                         "soundfont": audio.soundfont}
        write_text_atomic(example_dir / "labels.json", json.dumps(labels))
        entries.append(spec.to_dict() | {"soundfont": audio.soundfont, "duration_s": performance.duration,
                                         "notes": len(performance.notes), "origin": arrangement.origin})
        audio_seconds += performance.duration
        context.log.info(f"[{index}/{len(specs)}] rendered {spec.example_key} with {audio.soundfont}")
    write_text_atomic(out_dir / "manifest.json", json.dumps({"seed": config.seed, "examples": entries}, indent=1))
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(metadata={
        "examples": len(entries),
        "audio_seconds": round(audio_seconds, 1),
        "render_seconds": round(seconds, 1),
        "soundfonts": ", ".join(p.name for p in soundfonts),
        "seed": config.seed,
    })


@dg.asset(group_name="synthesis", kinds={"pedalboard", "audio"}, code_version="1", deps=[rendered_examples],
          automation_condition=dg.AutomationCondition.eager())
def augmented_examples(context: dg.AssetExecutionContext, config: AugmentationConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Each rendered mix through a pedalboard chain: room impulse-response reverb, noise at a set SNR,
    microphone EQ, compression and limiting. Every parameter and seed is recorded beside the audio, and
    applying the record again gives the same samples."""
    rendered_dir = storage.synthetic_dir() / "rendered"
    out_dir = storage.synthetic_dir() / "augmented"
    manifest = json.loads((rendered_dir / "manifest.json").read_text())
    entries = []
    for index, example in enumerate(manifest["examples"]):
        mix, sample_rate = read_audio(rendered_dir / example["example_key"] / "mix.flac")
        for variant in range(config.variants_per_example):
            chain = sample_chain(config.seed * 1000 + index * 10 + variant)
            key = f"{example['example_key']}-aug{variant}"
            write_audio(out_dir / key / "mix.flac", apply_chain(mix, sample_rate, chain), sample_rate)
            record = {"augmented_key": key, "source_example": example["example_key"], "chain": chain}
            write_text_atomic(out_dir / key / "record.json", json.dumps(record, indent=1))
            entries.append(record)
    write_text_atomic(out_dir / "manifest.json", json.dumps({"seed": config.seed, "examples": entries}, indent=1))
    snrs = sorted({e["chain"]["steps"][1]["snr_db"] for e in entries})
    context.log.info(f"augmented {len(entries)} examples")
    return dg.MaterializeResult(metadata={"examples": len(entries), "snr_db_values": str(snrs), "seed": config.seed})


def rendered_example_dirs(storage: StorageResource) -> list[Path]:
    manifest = json.loads((storage.synthetic_dir() / "rendered" / "manifest.json").read_text())
    return [storage.synthetic_dir() / "rendered" / e["example_key"] for e in manifest["examples"]]

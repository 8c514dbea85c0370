import base64
import json
import time

import dagster as dg

from pipeline_project.analysis.mir import analyze
from pipeline_project.analysis.plots import analysis_plot
from pipeline_project.analysis.theory import analyze_theory, chord_timeline_markdown
from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.assets.separation import song_stems
from pipeline_project.audio.io import read_audio, write_bytes_atomic, write_text_atomic
from pipeline_project.resources import StorageResource
from pipeline_project.separation.separator import STEM_NAMES


@dg.asset(partitions_def=songs_partitions, group_name="analysis", kinds={"python"}, code_version="2", deps=[song_stems])
def song_analysis(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Tempo, beat times, onsets, key and mode with a confidence, a chord per beat, sections and integrated
    loudness (LUFS), computed from the stems; the metadata shows a plot of the waveform with beats and
    sections, and the separator that made the stems."""
    song_dir = storage.song_dir(context.partition_key)
    stems = {}
    for name in STEM_NAMES:
        stems[name], sample_rate = read_audio(song_dir / "stems" / f"{name}.flac")
    started = time.perf_counter()
    result = analyze(stems, sample_rate)
    seconds = time.perf_counter() - started
    write_text_atomic(song_dir / "analysis.json", json.dumps(result, indent=1))
    png = analysis_plot(sum(stems.values()), sample_rate, result)
    write_bytes_atomic(song_dir / "analysis.png", png)
    separator = storage.read_json(song_dir / "stems.json")
    return dg.MaterializeResult(metadata={
        "tempo_bpm": result["tempo_bpm"],
        "key": f"{result['key_tonic']} {result['key_mode']}",
        "key_confidence": result["key_confidence"],
        "beats": len(result["beat_times"]),
        "sections": " ".join(s["label"] for s in result["sections"]),
        "loudness_lufs": result["loudness_lufs"],
        "separator": separator.get("separator", "unknown") + (f" ({separator['model_name']})" if separator.get("model_name") else ""),
        "plot": dg.MetadataValue.md(f"![waveform, beats and sections](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "plot_file": dg.MetadataValue.path(str(song_dir / "analysis.png")),
        "seconds": round(seconds, 2),
    })


@dg.asset(partitions_def=songs_partitions, group_name="analysis", kinds={"music21"}, code_version="2", deps=[song_analysis])
def song_theory(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Roman numerals of the chords in the detected key, harmonic functions, cadences and a syncopation index."""
    song_dir = storage.song_dir(context.partition_key)
    result = analyze_theory(storage.read_json(song_dir / "analysis.json"))
    write_text_atomic(song_dir / "theory.json", json.dumps(result, indent=1))
    cadence_counts: dict[str, int] = {}
    for cadence in result["cadences"]:
        cadence_counts[cadence["type"]] = cadence_counts.get(cadence["type"], 0) + 1
    analysis = storage.read_json(song_dir / "analysis.json")
    return dg.MaterializeResult(metadata={
        "key": result["key"],
        "tempo_bpm": analysis["tempo_bpm"],
        "chord_timeline": dg.MetadataValue.md(chord_timeline_markdown(analysis, result)),
        "progression_start": " ".join(result["progression"][:12]),
        "cadences": dg.MetadataValue.json(cadence_counts),
        "syncopation_index": result["syncopation_index"],
    })

import json
import time

import dagster as dg

from pipeline_project.analysis import learned
from pipeline_project.analysis.mir import analyze
from pipeline_project.analysis.plots import analysis_plot
from pipeline_project.analysis.streaming import StemFiles, waveform_peaks
from pipeline_project.analysis.theory import analyze_theory, chord_timeline_markdown
from pipeline_project.assets.metadata import png_markdown
from pipeline_project.assets.partitions import for_each_song, songs_partitions
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.assets.separation import song_stems
from pipeline_project.files import write_bytes_atomic, write_text_atomic
from pipeline_project.resources import MlflowResource, StorageResource
from pipeline_project.separation.separator import STEM_NAMES


@dg.asset(partitions_def=songs_partitions, group_name="analysis", kinds={"python"}, code_version="4", deps=[song_stems])
@retry_transient_failures
def song_analysis(
    context: dg.AssetExecutionContext, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Tempo and tempo curve, beats, downbeats and time signature, onsets, key and mode with the local key of
    each stretch of bars, a chord and bass note per beat, sections, and integrated and short-term loudness with
    the loudness range, each with a confidence, computed from the stems (see `analysis.mir`): beats, metre,
    chords and keys by the champions of the learned analysers' model families in MLflow (`beat_tracker`,
    `chord_recognizer`, `key_tracker`; the shipped set is registered on the first run), the rest, and any
    family without a champion, by the DSP path. The metadata says which path made what and names the registry
    versions used, shows a plot of the waveform with beats and sections, and the separator that made the stems."""
    models = mlflow.analysis_models(log=context.log.info)
    return for_each_song(context, lambda key: analyse_one_song(storage, key, models))


def analyse_one_song(storage: StorageResource, key: str, models: learned.ModelSet | None) -> dict:
    song = storage.song(key)
    storage.fetch(song.stems_dir)
    storage.fetch(song.path, pattern="*.json")
    with StemFiles(song.stems_dir, STEM_NAMES) as stems:  # read a window at a time: memory stays flat
        started = time.perf_counter()
        result = analyze(stems, models=models)
        seconds = time.perf_counter() - started
        peaks = waveform_peaks(stems)
    write_text_atomic(song.analysis, json.dumps(result, indent=1))
    png = analysis_plot(peaks, result["duration_s"], result)
    write_bytes_atomic(song.analysis_plot, png)
    storage.publish(song.path)
    separator = storage.read_json(song.stems_record)
    tempi = [bpm for _, bpm in result["tempo_curve"]]
    return {
        "tempo_bpm": result["tempo_bpm"],
        "tempo_confidence": result["tempo_confidence"],
        "tempo_range_bpm": f"{min(tempi):.1f}-{max(tempi):.1f}" if tempi else "",
        "tempo_stability": result["tempo_stability"],
        "time_signature": result["time_signature"],
        "meter_confidence": result["meter_confidence"],
        "key": f"{result['key_tonic']} {result['key_mode']}",
        "key_confidence": result["key_confidence"],
        "beats": len(result["beat_times"]),
        "bars": len(result["downbeat_times"]),
        "sections": " ".join(s["label"] for s in result["sections"]),
        "loudness_lufs": result["loudness_lufs"],
        "loudness_range_lu": result["loudness_range_lu"],
        "separator": separator.get("separator", "unknown")
        + (f" ({separator['model_name']})" if separator.get("model_name") else ""),
        "plot": png_markdown("waveform, beats and sections", png),
        "plot_file": dg.MetadataValue.path(storage.location(song.analysis_plot)),
        "seconds": round(seconds, 2),
        "analysers": ", ".join(f"{part}: {path}" for part, path in result["analysers"].items()),
        "analysis_models": dg.MetadataValue.json(result["models"]),
        "local_keys": " ".join(f"{k['tonic']}:{k['mode']}" for k in result["local_keys"]),
    }


@dg.asset(
    partitions_def=songs_partitions, group_name="analysis", kinds={"music21"}, code_version="4", deps=[song_analysis]
)
@retry_transient_failures
def song_theory(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Roman numerals with inversions and secondary dominants in the detected key, harmonic functions, named
    progressions, cadences with a strength, harmonic complexity, syncopation, metric hierarchy, rhythmic
    complexity and genre cues (see `analysis.theory`)."""
    return for_each_song(context, lambda key: theory_of_one_song(storage, key))


def theory_of_one_song(storage: StorageResource, key: str) -> dict:
    song = storage.song(key)
    storage.fetch(song.path, pattern="*.json")
    analysis = storage.read_json(song.analysis)
    result = analyze_theory(analysis)
    write_text_atomic(song.theory, json.dumps(result, indent=1))
    storage.publish(song.path)
    cadence_counts: dict[str, int] = {}
    for cadence in result["cadences"]:
        cadence_counts[cadence["type"]] = cadence_counts.get(cadence["type"], 0) + 1
    genres = result["genre_cues"]["genres"]
    return {
        "key": result["key"],
        "tempo_bpm": analysis["tempo_bpm"],
        "time_signature": analysis["time_signature"],
        "chord_timeline": dg.MetadataValue.md(chord_timeline_markdown(analysis, result)),
        "progression_start": " ".join(result["progression"][:12]),
        "named_progressions": ", ".join(f"{p['name']} x{p['count']}" for p in result["progressions"]) or "none",
        "secondary_dominants": ", ".join(result["secondary_dominants"]) or "none",
        "cadences": dg.MetadataValue.json(cadence_counts),
        "strongest_cadence": max((c["strength"] for c in result["cadences"]), default=0.0),
        "transition_entropy_bits": result["harmonic_complexity"]["transition_entropy_bits"],
        "chromaticism": result["harmonic_complexity"]["chromaticism"],
        "syncopation_index": result["syncopation_index"],
        "metric_hierarchy_correlation": result["metric_hierarchy"]["hierarchy_correlation"],
        "rhythmic_complexity": result["rhythmic_complexity"]["complexity"],
        "genre_cues": dg.MetadataValue.json(dict(list(genres.items())[:3])),
    }

"""Building the anonymized tables from private lake records.

Only coarse, non-identifying values leave: keyed-hash ids, tempo rounded to 5 BPM, duration buckets,
counts and shares. No tags, file names, paths or event times.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pandas as pd

from pipeline_project.analysis.drum_hits import FEATURE_NAMES, features_at_onsets, isolated_hits
from pipeline_project.datasets.anonymize import assign_splits, duration_bucket, keyed_hash, round_tempo

CADENCE_TYPES = ("perfect_authentic", "imperfect_authentic", "plagal", "half", "deceptive")
SONG_FEATURE_COLUMNS = (
    "song_id", "tempo_bpm", "tempo_confidence", "key_tonic", "key_mode", "key_confidence", "loudness_lufs",
    "duration_bucket", "chord_vocabulary", "chord_change_rate", "tonic_share", "subdominant_share",
    "dominant_share", *(f"cadences_{kind}" for kind in CADENCE_TYPES), "syncopation_index", "beats_per_bar",
    "loudness_range_lu", "transition_entropy_bits", "chromaticism", "rhythmic_complexity", "metric_hierarchy_correlation",
    "separator",
)


def song_features_table(songs: list[dict], secret: bytes) -> pd.DataFrame:
    """One row per song. `songs` items hold the lake records: key, song, stems, analysis, theory."""
    rows = []
    for record in songs:
        analysis, theory = record["analysis"], record["theory"]
        chords = [c["chord"] for c in analysis["chords"] if c["chord"] != "N"]
        changes = sum(1 for a, b in zip(chords, chords[1:]) if a != b)
        cadences = Counter(c["type"] for c in theory["cadences"])
        rows.append({
            "song_id": keyed_hash(secret, f"song:{record['key']}"),
            "tempo_bpm": round_tempo(analysis["tempo_bpm"]),
            "tempo_confidence": float(analysis["tempo_confidence"]),
            "key_tonic": analysis["key_tonic"],
            "key_mode": analysis["key_mode"],
            "key_confidence": float(analysis["key_confidence"]),
            "loudness_lufs": round(float(analysis["loudness_lufs"]), 1),
            "duration_bucket": duration_bucket(analysis["duration_s"]),
            "chord_vocabulary": len(set(chords)),
            "chord_change_rate": round(changes / max(1, len(chords) - 1), 4),
            "tonic_share": theory["function_shares"]["T"],
            "subdominant_share": theory["function_shares"]["S"],
            "dominant_share": theory["function_shares"]["D"],
            **{f"cadences_{kind}": int(cadences.get(kind, 0)) for kind in CADENCE_TYPES},
            "syncopation_index": float(theory["syncopation_index"]),
            "beats_per_bar": int(analysis.get("beats_per_bar", 4)),
            "loudness_range_lu": round(float(analysis.get("loudness_range_lu", 0.0)), 1),
            "transition_entropy_bits": float(theory["harmonic_complexity"]["transition_entropy_bits"]),
            "chromaticism": float(theory["harmonic_complexity"]["chromaticism"]),
            "rhythmic_complexity": float(theory["rhythmic_complexity"]["complexity"]),
            "metric_hierarchy_correlation": float(theory["metric_hierarchy"]["hierarchy_correlation"]),
            "separator": "demucs" if record["stems"]["separator"] == "demucs" else "dsp-fallback",
        })
    table = pd.DataFrame(rows, columns=list(SONG_FEATURE_COLUMNS))  # the schema holds even with no songs yet
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


SYNTHETIC_REFERENCE = re.compile(r"(rendered|augmented|features)/ex-[0-9a-f]{12}(-a\d+)?(/[a-z_]+\.(flac|npy)|/stems|\.npy)")
SYNTHETIC_REFERENCES = {"mix_path": SYNTHETIC_REFERENCE, "stems_path": SYNTHETIC_REFERENCE, "features_path": SYNTHETIC_REFERENCE}
SYNTHETIC_FREE_TEXT = frozenset({"labels", "kern", "windows", "augmentation_chain", "humanization", "voices"})


def synthetic_examples_table(entries: list[dict], secret: bytes) -> pd.DataFrame:
    """One row per clean or augmented example, split by source so one piece never lands in two splits.

    `entries` items: {"key", "variant", "labels" (the example's labels.json, times already moved by any
    time-stretch), "chain" (augmentation record or None), "mix_path", "stems_path", "features_path", "windows"}.
    Paths are relative to the synthetic lake and named by neutral example ids.
    """
    rows = []
    for entry in entries:
        labels, chain = entry["labels"], entry.get("chain")
        spec = labels["spec"]
        steps = {s["name"]: s for s in chain["steps"]} if chain else {}
        notes = Counter(n["stem"] for n in labels["notes"])
        rows.append({
            "example_id": keyed_hash(secret, f"example:{entry['key']}"),
            "source_id": keyed_hash(secret, f"source:{spec['source']['source_id']}"),
            "source_kind": spec["source"]["kind"],
            "source_format": spec["source"]["format"],
            "licence": spec["source"]["licence"],
            "variant": entry["variant"],
            "soundfonts": ",".join(name.rsplit(".", 1)[0] for name in labels["soundfonts"]),
            "programs": ",".join(f"{v['family']}:{v['program']}" for _, v in sorted(labels["voices"].items())),
            "voices": json.dumps(labels["voices"], sort_keys=True),
            "tempo_bpm": round(float(labels["tempo_bpm"]), 1),
            "key_tonic": labels["key"].split(":")[0],
            "key_mode": labels["key"].split(":")[1],
            "meter_numerator": int(labels["time_signature"].split("/")[0]),
            "meter_denominator": int(labels["time_signature"].split("/")[1]),
            "duration_bucket": duration_bucket(labels["duration"]),
            **{f"notes_{stem}": int(notes.get(stem, 0)) for stem in ("drums", "bass", "other", "vocals")},
            "render_seed": int(spec["seed"]),
            "humanization": json.dumps(labels["humanization"], sort_keys=True),
            "augmentation_presets": ",".join(chain["presets"]) if chain else "",
            "augmentation_seed": int(chain["seed"]) if chain else -1,
            "augmentation_chain": json.dumps(chain["steps"], sort_keys=True) if chain else "[]",
            "snr_db": float(steps["noise"]["snr_db"]) if "noise" in steps else np.nan,
            "noise_kind": steps["noise"]["kind"] if "noise" in steps else "",
            "rt60_s": float(steps["room"]["room"]["rt60_s"]) if "room" in steps else np.nan,
            "room_type": steps["room"]["room"]["room_type"] if "room" in steps else "",
            "stretch_rate": float(labels.get("time_scale", 1.0)),
            "tuning_cents": float(labels.get("tuning_cents", 0.0)),
            "mix_path": entry["mix_path"],
            "stems_path": entry["stems_path"],
            "features_path": entry["features_path"],
            "windows": json.dumps(entry["windows"]),
            "labels": json.dumps({k: labels[k] for k in ("notes", "beats", "downbeats", "chords", "tempo_curve", "drum_hits",
                                                         "key", "time_signature", "duration")}),
            "kern": labels.get("kern", ""),
        })
    table = pd.DataFrame(rows)
    if len(table):
        splits = assign_splits(list(table["source_id"]), secret)
        table.insert(2, "split", table["source_id"].map(splits))
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


def drum_hits_table(examples: list[tuple[dict, np.ndarray, int]], secret: bytes) -> pd.DataFrame:
    """Per-hit features of isolated hits in rendered drum stems, labelled from the MIDI they were rendered
    from. `examples` items: (labels.json, mono drum stem, sample rate). Split by source example."""
    rows = []
    for labels, drums, sample_rate in examples:
        group = labels["spec"]["example_key"]
        drum_notes = [n for n in labels["notes"] if n["stem"] == "drums"]
        hits = isolated_hits(drum_notes)
        audible = [n["onset"] for n in drum_notes if n.get("articulation") != "choke"]
        features = features_at_onsets(drums, sample_rate, [onset for onset, _ in hits], audible)
        label_at = dict(hits)
        for row in features:
            onset = row.pop("onset")
            rows.append({"hit_id": keyed_hash(secret, f"hit:{group}:{onset:.6f}"), "group_id": keyed_hash(secret, f"group:{group}"),
                         "label": label_at[onset], "tempo_bpm": round_tempo(labels["tempo_bpm"]), **row})
    table = pd.DataFrame(rows, columns=["hit_id", "group_id", "label", "tempo_bpm", *FEATURE_NAMES])
    splits = assign_splits(list(table["group_id"]), secret)
    table.insert(2, "split", table["group_id"].map(splits))
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)

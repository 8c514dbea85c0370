"""Building the anonymized tables from private lake records.

Only coarse, non-identifying values leave: keyed-hash ids, tempo rounded to 5 BPM, duration buckets,
counts and shares. No tags, file names, paths or event times.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd

from pipeline_project.analysis.drum_hits import FEATURE_NAMES, features_at_onsets, isolated_hits
from pipeline_project.datasets.anonymize import assign_splits, duration_bucket, keyed_hash, round_tempo
from pipeline_project.synthesis.arrangement import DRUM_CLASSES

CADENCE_TYPES = ("authentic", "plagal", "half", "deceptive")
SONG_FEATURE_COLUMNS = (
    "song_id", "tempo_bpm", "tempo_confidence", "key_tonic", "key_mode", "key_confidence", "loudness_lufs",
    "duration_bucket", "chord_vocabulary", "chord_change_rate", "tonic_share", "subdominant_share",
    "dominant_share", *(f"cadences_{kind}" for kind in CADENCE_TYPES), "syncopation_index", "separator",
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
            "separator": "demucs" if record["stems"]["separator"] == "demucs" else "dsp-fallback",
        })
    table = pd.DataFrame(rows, columns=list(SONG_FEATURE_COLUMNS))  # the schema holds even with no songs yet
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)


def synthetic_examples_table(rendered: list[dict], augmented: list[dict], secret: bytes) -> pd.DataFrame:
    """One row per clean or augmented example. `rendered` items: the example's labels.json; `augmented`
    items: record.json of each augmented variant."""
    by_key = {r["spec"]["example_key"]: r for r in rendered}
    rows = []

    def base_row(labels: dict) -> dict:
        spec = labels["spec"]
        stems = Counter(n["stem"] for n in labels["notes"])
        return {
            "source_id": keyed_hash(secret, f"source:{spec['source']}"),
            "source_kind": spec["source_kind"],
            "groove_style": spec["groove"],
            "soundfont": labels["soundfont"].rsplit(".", 1)[0],
            "tempo_bpm": round_tempo(labels["tempo_bpm"]),
            "key_tonic": labels["key"].split(":")[0],
            "key_mode": labels["key"].split(":")[1],
            "beats_per_bar": int(labels["beats_per_bar"]),
            "duration_bucket": duration_bucket(labels["duration"]),
            **{f"notes_{stem}": int(stems.get(stem, 0)) for stem in ("drums", "bass", "other", "vocals")},
            "render_seed": int(spec["seed"]),
            "jitter_ms": float(labels["humanization"]["jitter_ms"]),
        }

    for key, labels in by_key.items():
        rows.append({"example_id": keyed_hash(secret, f"example:{key}"), "variant": "clean", **base_row(labels),
                     "augmentation_seed": -1, "augmentation_chain": "[]", "snr_db": np.nan, "rt60_s": np.nan})
    for record in augmented:
        labels = by_key[record["source_example"]]
        steps = {s["name"]: s for s in record["chain"]["steps"]}
        rows.append({"example_id": keyed_hash(secret, f"example:{record['augmented_key']}"), "variant": "augmented",
                     **base_row(labels), "augmentation_seed": int(record["chain"]["seed"]),
                     "augmentation_chain": json.dumps(record["chain"]["steps"], sort_keys=True),
                     "snr_db": float(steps["noise"]["snr_db"]), "rt60_s": float(steps["room_reverb"]["rt60_s"])})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def drum_hits_table(examples: list[tuple[dict, np.ndarray, int]], secret: bytes) -> pd.DataFrame:
    """Per-hit features of isolated hits in rendered drum stems, labelled from the MIDI they were rendered
    from. `examples` items: (labels.json, mono drum stem, sample rate). Split by source example."""
    rows = []
    for labels, drums, sample_rate in examples:
        group = labels["spec"]["example_key"]
        hits = isolated_hits([n for n in labels["notes"] if n["stem"] == "drums"], DRUM_CLASSES)
        features = features_at_onsets(drums, sample_rate, [onset for onset, _ in hits])
        label_at = dict(hits)
        for row in features:
            onset = row.pop("onset")
            rows.append({"hit_id": keyed_hash(secret, f"hit:{group}:{onset:.6f}"), "group_id": keyed_hash(secret, f"group:{group}"),
                         "label": label_at[onset], "tempo_bpm": round_tempo(labels["tempo_bpm"]), **row})
    table = pd.DataFrame(rows, columns=["hit_id", "group_id", "label", "tempo_bpm", *FEATURE_NAMES])
    splits = assign_splits(list(table["group_id"]), secret)
    table.insert(2, "split", table["group_id"].map(splits))
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)

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
from pipeline_project.datasets.anonymize import (
    SPLIT_FRACTIONS,
    assign_splits,
    duration_bucket,
    keyed_hash,
    keyed_order,
    microaggregate,
    round_tempo,
    splits_of,
)
from pipeline_project.layout import SyntheticCorpus

CADENCE_TYPES = ("perfect_authentic", "imperfect_authentic", "plagal", "half", "deceptive")
SONG_FEATURE_COLUMNS = (
    "song_id",
    "split",
    "genre",
    "tempo_bpm",
    "tempo_confidence",
    "key_tonic",
    "key_mode",
    "key_confidence",
    "loudness_lufs",
    "duration_bucket",
    "chord_vocabulary",
    "chord_change_rate",
    "tonic_share",
    "subdominant_share",
    "dominant_share",
    *(f"cadences_{kind}" for kind in CADENCE_TYPES),
    "syncopation_index",
    "beats_per_bar",
    "loudness_range_lu",
    "transition_entropy_bits",
    "chromaticism",
    "rhythmic_complexity",
    "metric_hierarchy_correlation",
    "separator",
)


def genre_label(tag: str | None) -> str:
    """A song's genre tag as one of the genre-cue genres, else "other" (free-text tags could identify it)."""
    from pipeline_project.analysis.genre_cues import GENRES

    folded = (tag or "").strip().casefold()
    return next((genre for genre in GENRES if genre in folded), "other")


def song_feature_row(record: dict, secret: bytes) -> dict:
    """One song's `song_features` row before microaggregation. `record` holds its lake records: key, song, stems,
    analysis, theory."""
    analysis, theory = record["analysis"], record["theory"]
    chords = [c["chord"] for c in analysis["chords"] if c["chord"] != "N"]
    changes = sum(1 for a, b in zip(chords, chords[1:]) if a != b)
    cadences = Counter(c["type"] for c in theory["cadences"])
    return {
        "song_id": keyed_hash(secret, f"song:{record['key']}"),
        "split": "",
        "genre": genre_label(record["song"].get("genre")),
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
        "separator": record["stems"]["separator"]
        if record["stems"]["separator"] in ("demucs", "learned")
        else "dsp-fallback",
    }


def song_features_table(songs: list[dict], secret: bytes, k: int = 1) -> tuple[pd.DataFrame, dict]:
    """One row per song and the k-anonymity report (see `anonymize.microaggregate`: within each genre, every row
    identical to k - 1 others on all released columns). `songs` items hold the lake records: key, song, stems,
    analysis, theory. Split 70/15/15 by song, and rows in an order, both drawn from the secret."""
    rows = [song_feature_row(record, secret) for record in songs]
    table = pd.DataFrame(rows, columns=list(SONG_FEATURE_COLUMNS))  # the schema holds even with no songs yet
    table, report = microaggregate(
        table,
        k,
        list(SONG_FEATURE_NUMERIC),
        list(SONG_FEATURE_CATEGORICAL),
        stratum="genre",
        precision=SONG_FEATURE_PRECISION,
    )
    table["tempo_bpm"] = table["tempo_bpm"].map(round_tempo).astype("int64")
    table["split"] = splits_of(table["song_id"], secret)
    return table.iloc[keyed_order(table["song_id"], secret)].reset_index(drop=True), report


# Tables released k-anonymous by microaggregation, with the columns that stay per row (a keyed id, a split drawn
# from the secret): every other column is a quasi-identifier, and identical rows are the design.
K_ANONYMOUS_TABLES = {"song_features": ("song_id", "split")}
# What leaves about a song besides its keyed id and split: every one of these is made k-anonymous by
# `anonymize.microaggregate` (a row is identical to k - 1 others on all of them).
SONG_FEATURE_CATEGORICAL = ("genre", "key_tonic", "key_mode", "duration_bucket", "separator")
SONG_FEATURE_NUMERIC = tuple(
    c for c in SONG_FEATURE_COLUMNS if c not in ("song_id", "split", *SONG_FEATURE_CATEGORICAL)
)
SONG_FEATURE_PRECISION = {
    "tempo_bpm": 0,
    "loudness_lufs": 1,
    "loudness_range_lu": 1,
    "chord_vocabulary": 1,
    "beats_per_bar": 1,
    **{f"cadences_{kind}": 1 for kind in CADENCE_TYPES},
}


SYNTHETIC_REFERENCE = re.compile(
    r"(rendered|augmented|features)/ex-[0-9a-f]{12}(-a\d+)?(/[a-z_]+\.(flac|npy)|/stems|\.npy)"
)
SYNTHETIC_REFERENCES = {
    "mix_path": SYNTHETIC_REFERENCE,
    "stems_path": SYNTHETIC_REFERENCE,
    "features_path": SYNTHETIC_REFERENCE,
}
SYNTHETIC_FREE_TEXT = frozenset({"labels", "kern", "windows", "augmentation_chain", "humanization", "voices"})


def synthetic_example_entries(corpus: SyntheticCorpus) -> list[dict]:
    """The augmented manifest's entries (clean and augmented examples) with their labels and the paths of their
    mix, stems and features relative to the corpus: what `synthetic_examples_table` releases."""
    entries = []
    for entry in json.loads(corpus.augmented_manifest.read_text())["examples"]:
        example = corpus.example(entry["key"], entry["variant"])
        entries.append(
            {
                **entry,
                "labels": json.loads(example.labels.read_text()),
                "mix_path": corpus.relative(example.mix),
                "stems_path": corpus.relative(corpus.rendered_example(entry["source_example"]).stems_dir),
                "features_path": corpus.relative(corpus.features_of(entry["key"])),
            }
        )
    return entries


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
        rows.append(
            {
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
                "labels": json.dumps(
                    {
                        k: labels[k]
                        for k in (
                            "notes",
                            "beats",
                            "downbeats",
                            "chords",
                            "tempo_curve",
                            "drum_hits",
                            "key",
                            "time_signature",
                            "duration",
                        )
                    }
                ),
                "kern": labels.get("kern", ""),
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(2, "split", splits_of(table["source_id"], secret))
        table = table.iloc[keyed_order(table["example_id"], secret)]
    return table.reset_index(drop=True)


def drum_hits_table(examples: list[tuple[dict, np.ndarray, int]], secret: bytes) -> pd.DataFrame:
    """Per-hit features of isolated hits in rendered drum stems, labelled from the MIDI they were rendered
    from. `examples` items: (labels.json, mono drum stem, sample rate). Split by source example."""
    return anonymize_drum_hits(private_drum_hits(examples), secret)


def private_drum_hits(examples: list[tuple[dict, np.ndarray, int]]) -> pd.DataFrame:
    """The hits before anonymization: example key, onset, label, tempo and features."""
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
            rows.append(
                {
                    "example": group,
                    "onset": onset,
                    "label": label_at[onset],
                    "tempo_bpm": float(labels["tempo_bpm"]),
                    **row,
                }
            )
    return pd.DataFrame(rows, columns=["example", "onset", "label", "tempo_bpm", *FEATURE_NAMES])


def drum_hits_order(secret: bytes, rows: int) -> np.ndarray:
    """The secret order of `drum_hits`' rows: the private row at each released position."""
    return np.random.default_rng(int(keyed_hash(secret, "shuffle:drum_hits", 8), 16)).permutation(rows)


def anonymize_drum_hits(private: pd.DataFrame, secret: bytes) -> pd.DataFrame:
    """Keyed-hash group ids (one HMAC per example), onsets dropped, tempo in 5 BPM steps, rows in a secret
    order, split by example. A hit's id is a 64-bit number made from its group's HMAC and its position in
    that secret order, so no id encodes an onset. Work is vectorized over group codes, and the text columns are
    categorical (written dictionary-encoded): a million hits take well under a second."""
    codes, examples = pd.factorize(private["example"])
    hashed = [keyed_hash(secret, f"group:{example}") for example in examples]
    splits = assign_splits(hashed, secret)
    order = drum_hits_order(secret, len(private))
    codes = codes[order]
    group_key = np.array([int(h, 16) for h in hashed], dtype=np.uint64)
    position = np.arange(len(codes), dtype=np.uint64)  # the row's place in the secret order: unique, says nothing
    with np.errstate(over="ignore"):  # wrapping 64-bit arithmetic is the point
        hit_id = (
            (group_key[codes] + position * np.uint64(0x9E3779B97F4A7C15)).view(np.int64)
            if len(codes)
            else np.array([], np.int64)
        )
    split_codes = pd.Categorical([splits[h] for h in hashed], categories=[name for name, _ in SPLIT_FRACTIONS])
    label_codes, label_names = pd.factorize(private["label"])
    labels = (
        pd.Categorical.from_codes(label_codes[order], categories=list(label_names))
        if len(order)
        else pd.Categorical([])
    )
    return pd.DataFrame(
        {
            "hit_id": hit_id,
            "group_id": pd.Categorical.from_codes(codes, categories=hashed) if len(codes) else pd.Categorical([]),
            "split": pd.Categorical.from_codes(split_codes.codes[codes], categories=split_codes.categories)
            if len(codes)
            else pd.Categorical([]),
            "label": labels,
            "tempo_bpm": (np.round(private["tempo_bpm"].to_numpy(dtype=float)[order] / 5) * 5).astype("int64"),
            **{name: private[name].to_numpy()[order] for name in FEATURE_NAMES},
        },
        copy=False,
    )  # every column is a fresh array: stacking them into one block would copy them all again


PAIR_WINDOW_S = 2.0


def concert_pairs_table(pairs: list[dict], secret: bytes) -> pd.DataFrame:
    """Clean and concert-degraded log-mel windows of the same rendered track, for song-identification
    training. `pairs` items: {"track" (source example key), "clean" and "degraded" (n_mels, frames) log-mel
    arrays, "time_scale", "windows" [(start s, length s)], "frames_per_second", "snr_db", "noise_kind",
    "rt60_s"}. Windows are stored as float16 bytes without their position in the track."""
    rows = []
    for pair in pairs:
        track = keyed_hash(secret, f"track:{pair['track']}")
        width = int(round(PAIR_WINDOW_S * pair["frames_per_second"]))
        for index, (start, _) in enumerate(pair["windows"]):
            begin = int(start * pair["frames_per_second"])
            moved = int(start / pair["time_scale"] * pair["frames_per_second"])
            clean, degraded = pair["clean"][:, begin : begin + width], pair["degraded"][:, moved : moved + width]
            if clean.shape[1] < width or degraded.shape[1] < width:
                continue
            rows.append(
                {
                    "pair_id": keyed_hash(secret, f"pair:{pair['degraded_key']}:{index}"),
                    "track_id": track,
                    "snr_db": float(pair["snr_db"]),
                    "noise_kind": pair["noise_kind"],
                    "rt60_s": round(float(pair["rt60_s"]), 1),
                    "n_mels": int(clean.shape[0]),
                    "frames": width,
                    "clean_logmel": clean.astype(np.float16).tobytes(),
                    "degraded_logmel": degraded.astype(np.float16).tobytes(),
                }
            )
    table = pd.DataFrame(
        rows,
        columns=[
            "pair_id",
            "track_id",
            "snr_db",
            "noise_kind",
            "rt60_s",
            "n_mels",
            "frames",
            "clean_logmel",
            "degraded_logmel",
        ],
    )
    table.insert(2, "split", splits_of(table["track_id"], secret))
    return table.iloc[keyed_order(table["pair_id"], secret)].reset_index(drop=True)


CONTRIBUTION_COLUMNS = (
    "sample_id",
    "group_id",
    "split",
    "instrument",
    "genre",
    "tempo_bpm",
    "BodyE",
    "SizzleE",
    "GeoMean",
    "SustainMs",
    "OpenHH",
)


def contributions_table(submissions: list[dict], secret: bytes) -> pd.DataFrame:
    """Every accepted submission's rows; the group (for splits) is the submission, hashed with the secret."""
    from pipeline_project.datasets.contributions import rows_of, submission_id

    parts = []
    for submission in submissions:
        sid = submission_id(submission)
        rows = rows_of(submission)
        rows.insert(0, "tempo_bpm", round_tempo(float(submission["metadata"]["tempo"])))
        rows.insert(0, "genre", submission["metadata"]["genre"])
        rows.insert(0, "instrument", submission["instrument"])
        rows.insert(0, "group_id", keyed_hash(secret, f"contribution:{sid}"))
        rows.insert(0, "sample_id", [keyed_hash(secret, f"sample:{sid}:{i}") for i in range(len(rows))])
        parts.append(rows)
    table = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[c for c in CONTRIBUTION_COLUMNS if c != "split"])
    )
    table.insert(2, "split", splits_of(table["group_id"], secret))
    return table[list(CONTRIBUTION_COLUMNS)].iloc[keyed_order(table["sample_id"], secret)].reset_index(drop=True)

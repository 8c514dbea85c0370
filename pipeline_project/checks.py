"""Asset checks on the datasets: a blocking privacy audit and a validation of values."""


import json

import dagster as dg
import numpy as np
import pandas as pd

from pipeline_project.assets.datasets import drum_hits, song_features, synthetic_examples
from pipeline_project.audio.ingest import song_files
from pipeline_project.datasets.parquet import read_dataset
from pipeline_project.datasets.privacy import audit_table, catalog_terms
from pipeline_project.datasets.tables import SYNTHETIC_FREE_TEXT, SYNTHETIC_REFERENCES
from pipeline_project.resources import StorageResource

DATASET_ASSETS = (song_features, synthetic_examples, drum_hits)
# Synthetic examples come from public or generated scores; their labels may hold times and their relative
# references must match the neutral-id pattern, but catalog terms, absolute paths and URLs still fail.
SYNTHETIC_EXEMPTIONS = {"references": SYNTHETIC_REFERENCES, "free_text": SYNTHETIC_FREE_TEXT}


def private_catalog(storage: StorageResource) -> set[str]:
    """Titles, artists, albums and file names of every song the pipeline has seen, quarantined ones and every
    file in the drop folder (duplicates included) too."""
    songs = [{"file_names": [p.name for p in song_files(storage.incoming)]}]
    song_root = storage.lake / "songs"
    if song_root.is_dir():
        for record in song_root.glob("*/song.json"):
            songs.append(json.loads(record.read_text()))
    if storage.quarantine.is_dir():
        songs.append({"file_names": [p.name for p in storage.quarantine.iterdir() if not p.name.endswith(".reason.txt")]})
    return catalog_terms(songs)


def _read(storage: StorageResource, name: str) -> pd.DataFrame:
    return read_dataset(storage.dataset_dir(name))


def _privacy_check(asset_def: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset_def.key.path[-1]

    @dg.asset_check(asset=asset_def, name="privacy_audit", blocking=True,
                    description="Fails (and blocks everything downstream) if any string value holds a title, artist, "
                                "album or file name of the private catalog, a path or URL, or a column holds event times.")
    def privacy_audit(storage: StorageResource) -> dg.AssetCheckResult:
        table = _read(storage, name)
        exempt = SYNTHETIC_EXEMPTIONS if name == "synthetic_examples" else {}
        findings = audit_table(table, private_catalog(storage), **exempt)
        return dg.AssetCheckResult(
            passed=not findings,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"findings": len(findings), "details": dg.MetadataValue.md("\n".join(f"- {f}" for f in findings[:50]) or "none"),
                      "rows_scanned": len(table)},
        )

    return privacy_audit


def _validation_check(asset_def: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset_def.key.path[-1]

    @dg.asset_check(asset=asset_def, name="validation",
                    description="Rows present, no NaN or infinity outside optional columns, no duplicate ids, "
                                "and at least 2 examples of every class where the table has labels.")
    def validation(storage: StorageResource) -> dg.AssetCheckResult:
        table = _read(storage, name)
        problems = []
        if table.empty:
            problems.append("no rows")
        optional = {"snr_db", "rt60_s"}  # NaN by design for clean examples
        numeric = table.select_dtypes(include="number").drop(columns=[c for c in optional if c in table], errors="ignore")
        bad = [c for c in numeric if not np.isfinite(numeric[c].to_numpy(dtype="float64")).all()]
        if bad:
            problems.append(f"NaN or infinity in {', '.join(bad)}")
        id_column = next((c for c in table.columns if c.endswith("_id") and c not in ("group_id", "source_id")), None)
        if id_column and table[id_column].duplicated().any():
            problems.append(f"duplicate values in {id_column}")
        if "label" in table:
            rare = table["label"].value_counts()
            rare = rare[rare < 2]
            if len(rare):
                problems.append(f"classes with fewer than 2 examples: {', '.join(rare.index)}")
        return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"problems": "; ".join(problems) or "none", "rows": len(table)})

    return validation


privacy_checks = [_privacy_check(a) for a in DATASET_ASSETS]
validation_checks = [_validation_check(a) for a in DATASET_ASSETS]

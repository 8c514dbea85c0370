"""Asset checks: a blocking privacy audit and a validation of every dataset, and the accuracy of separation
and analysis measured on rendered examples."""

import json
from pathlib import PurePosixPath

import dagster as dg
import pandas as pd

from pipeline_project.analysis.accuracy import TARGETS, RenderedAccuracy, accuracy_on_rendered
from pipeline_project.analysis.mir import analyze
from pipeline_project.assets.datasets import (
    concert_pairs,
    contributed_hits,
    drum_hits,
    review_queue,
    song_features,
    synthetic_examples,
)
from pipeline_project.assets.labeling import human_labels
from pipeline_project.assets.synthesis import rendered_examples
from pipeline_project.audio.ingest import REASON_SUFFIX
from pipeline_project.audio.io import SUPPORTED_EXTENSIONS
from pipeline_project.datasets.anonymize import smallest_group
from pipeline_project.datasets.privacy import audit_table, catalog_terms
from pipeline_project.datasets.snapshots import latest_manifest, pending_manifest, publish, read_snapshot
from pipeline_project.datasets.tables import K_ANONYMOUS_TABLES, SYNTHETIC_FREE_TEXT, SYNTHETIC_REFERENCES
from pipeline_project.datasets.validation import validate_table
from pipeline_project.layout import SONG_RECORD
from pipeline_project.resources import DatasetsResource, MlflowResource, SeparatorResource, StorageResource

DATASET_ASSETS = (
    song_features,
    synthetic_examples,
    drum_hits,
    concert_pairs,
    contributed_hits,
    review_queue,
    human_labels,
)
# Synthetic examples come from public or generated scores; their labels may hold times and their relative
# references must match the neutral-id pattern, but catalog terms, absolute paths and URLs still fail.
SYNTHETIC_EXEMPTIONS = {"references": SYNTHETIC_REFERENCES, "free_text": SYNTHETIC_FREE_TEXT}
# Concert pairs hold log-mel windows as packed float16 values.
EXEMPTIONS = {
    "synthetic_examples": SYNTHETIC_EXEMPTIONS,
    "concert_pairs": {"arrays": {"clean_logmel": 2, "degraded_logmel": 2}},
}


def private_catalog(storage: StorageResource) -> set[str]:
    """Titles, artists, albums, file and folder names of every song the pipeline has seen, quarantined ones and
    every file in the drop folder (duplicates included) too."""
    dropped = [PurePosixPath(p) for p in storage.list_files(storage.incoming)]
    songs = [
        {
            "file_names": [
                p.as_posix() for p in dropped if p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".")
            ]
        }
    ]
    storage.fetch(storage.songs, pattern=SONG_RECORD)
    for key in storage.song_keys():
        record = storage.song(key).record
        if record.exists():
            songs.append(json.loads(record.read_text()))
    songs.append({"file_names": [p for p in storage.list_files(storage.quarantine) if not p.endswith(REASON_SUFFIX)]})
    return catalog_terms(songs)


def _checked_snapshot(storage: StorageResource, name: str) -> tuple[pd.DataFrame, str]:
    """The table of the dataset's snapshot under check (the pending one, else the published one) and its id."""
    folder = storage.fetch(storage.dataset_dir(name))
    manifest = pending_manifest(folder) or latest_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{name}: no snapshot yet (materialize the dataset first)")
    return read_snapshot(folder, manifest["snapshot_id"]), manifest["snapshot_id"]


def _privacy_check(asset_def: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset_def.key.path[-1]

    @dg.asset_check(
        asset=asset_def,
        name="privacy_audit",
        blocking=True,
        description="Fails (and blocks everything downstream) if any string value holds a title, artist, "
        "album or file name of the private catalog, a path or URL, if a column holds event times, "
        "or if the quasi-identifiers are not k-anonymous; reports k. Publishes the snapshot "
        "(makes it the one consumers read) only when it passes.",
    )
    def privacy_audit(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, datasets: DatasetsResource
    ) -> dg.AssetCheckResult:
        table, snapshot_id = _checked_snapshot(storage, name)
        exempt = EXEMPTIONS.get(name, {})
        findings = [str(f) for f in audit_table(table, private_catalog(storage), **exempt)]
        k = {}
        if name in K_ANONYMOUS_TABLES:  # every released value but the keyed id and the split is a quasi-identifier
            released = [c for c in table.columns if c not in K_ANONYMOUS_TABLES[name]]
            k = {"k": smallest_group(table, released), "k_required": datasets.k_anonymity}
            if len(table) and k["k"] < datasets.k_anonymity:
                findings.append(
                    f"k-anonymity: the rarest combination of all {len(released)} released columns has {k['k']} "
                    f"rows, fewer than k = {datasets.k_anonymity}"
                )
        if findings:
            context.log.error(
                f"{name}: privacy_audit failed on snapshot {snapshot_id}, which stays unpublished "
                f"({len(findings)} findings; first: {'; '.join(findings[:3])})"
            )
        else:
            folder = storage.dataset_dir(name)
            publish(folder, snapshot_id)
            storage.publish(folder)
        return dg.AssetCheckResult(
            passed=not findings,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{name}: {len(findings)} privacy findings, snapshot {snapshot_id} not published"
            if findings
            else None,
            metadata={
                "findings": len(findings),
                "details": dg.MetadataValue.md("\n".join(f"- {f}" for f in findings[:50]) or "none"),
                "rows_scanned": len(table),
                "snapshot_id": snapshot_id,
                "published": not findings,
                **k,
            },
        )

    return privacy_audit


def _validation_check(asset_def: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset_def.key.path[-1]

    @dg.asset_check(
        asset=asset_def,
        name="validation",
        description="Schema, ranges per feature, no NaN or infinity outside optional columns, no duplicate "
        "ids or rows, at least 2 examples of every class; 3-sigma outliers and near duplicates "
        "are reported.",
    )
    def validation(storage: StorageResource) -> dg.AssetCheckResult:
        table, _ = _checked_snapshot(storage, name)
        result = validate_table(name, table)
        return dg.AssetCheckResult(
            passed=not result["problems"],
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "problems": "; ".join(result["problems"]) or "none",
                "rows": len(table),
                "outliers_3_sigma": dg.MetadataValue.json(result["outliers"]),
                "exact_duplicates": result["exact_duplicates"],
                "near_duplicates": result["near_duplicates"],
            },
        )

    return validation


privacy_checks = [_privacy_check(a) for a in DATASET_ASSETS]
validation_checks = [_validation_check(a) for a in DATASET_ASSETS]


ACCURACY_EXAMPLES = 4  # rendered score excerpts scored on every materialization (a few seconds each on the fallback)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "separation_sdr",
            asset=rendered_examples,
            description="SDR per stem of the separator in use on rendered mixes, beside the mixture "
            "used as the estimate; passes when the separator beats that baseline on average.",
        ),
        dg.AssetCheckSpec(
            "analysis_accuracy",
            asset=rendered_examples,
            description="Beat F-measure, tempo, key weighted score, chord majmin and downbeat F-measure "
            "(mir_eval), and time-signature accuracy, of the analysis of separated rendered "
            f"mixes against their exact labels; passes at the targets {TARGETS}.",
        ),
    ],
)
def accuracy_on_rendered_examples(
    context: dg.AssetCheckExecutionContext,
    storage: StorageResource,
    separator: SeparatorResource,
    mlflow: MlflowResource,
):
    """Separation and analysis scored on the first rendered score excerpts, as a user's songs would be processed."""
    corpus = storage.synthetic()
    storage.fetch(corpus.rendered)
    manifest = storage.read_json(corpus.rendered_manifest)
    scores = [e["example_key"] for e in manifest["examples"] if not e["source_id"].startswith("groove:")]
    keys = scores[:ACCURACY_EXAMPLES]
    if not keys:
        for name in ("separation_sdr", "analysis_accuracy"):
            yield dg.AssetCheckResult(
                check_name=name, passed=True, metadata={"examples": 0, "note": "no score excerpts"}
            )
        return
    # The analysers and the separator songs get.
    models = mlflow.analysis_models(log=context.log.info)
    learned = mlflow.stem_separator(log=context.log.info) if separator.wants_learned(context.log) else None
    result = accuracy_on_rendered(
        corpus,
        keys,
        separate=lambda mix, rate: separator.separate(mix, rate, logger=context.log, learned=learned),
        analyze=lambda stems, rate: analyze(stems, rate, models),
    )
    yield _separation_result(result)
    yield _analysis_result(result, models)


def _separation_result(result: RenderedAccuracy) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="separation_sdr",
        passed=result.mean_improvement_db > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "separator": result.separator,
            "examples": len(result.keys),
            "mean_improvement_db": round(result.mean_improvement_db, 2),
            "per_stem": dg.MetadataValue.md(pd.DataFrame(result.per_stem).T.to_markdown()),
        },
    )


def _analysis_result(result: RenderedAccuracy, models) -> dg.AssetCheckResult:
    means = result.analysis_means()
    return dg.AssetCheckResult(
        check_name="analysis_accuracy",
        passed=all(means[m] >= t for m, t in TARGETS.items()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "separator": result.separator,
            "examples": len(result.keys),
            **means,
            "analysis_models": dg.MetadataValue.json(models.versions if models else {}),
            "targets": dg.MetadataValue.json(TARGETS),
            "per_example": dg.MetadataValue.md(
                pd.DataFrame(result.per_example, index=result.keys).round(3).to_markdown()
            ),
        },
    )


accuracy_checks = [accuracy_on_rendered_examples]

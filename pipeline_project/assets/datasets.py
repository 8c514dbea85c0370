import dagster as dg
import pandas as pd

from pipeline_project.assets.analysis import song_theory
from pipeline_project.assets.synthesis import augmented_examples, rendered_example_dirs, rendered_examples
from pipeline_project.audio.io import read_audio
from pipeline_project.datasets.anonymize import load_or_create_secret
from pipeline_project.datasets.parquet import WrittenDataset, write_dataset
from pipeline_project.datasets.tables import drum_hits_table, song_features_table, synthetic_examples_table
from pipeline_project.resources import StorageResource

# Like AutomationCondition.eager(), but a quarantined song (a partition that will never materialize)
# does not hold the datasets back forever.
REFRESH_WHEN_UPSTREAM_CHANGES = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager, ignoring quarantined songs")


def dataset_result(written: WrittenDataset, table: pd.DataFrame, **extra) -> dg.MaterializeResult:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in written.columns])
    return dg.MaterializeResult(
        metadata={
            "rows": written.rows,
            "dataset_version": written.version,
            "file": dg.MetadataValue.path(str(written.path)),
            "dagster/column_schema": schema,
            "dagster/row_count": written.rows,
            "preview": dg.MetadataValue.md(table.head(5).to_markdown(index=False) if len(table) else "(empty)"),
            **extra,
        },
        data_version=dg.DataVersion(written.version),
    )


@dg.asset(group_name="datasets", kinds={"parquet"}, code_version="1", deps=[song_theory],
          automation_condition=REFRESH_WHEN_UPSTREAM_CHANGES)
def song_features(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """One anonymized row per analysed song: tempo (5 BPM steps), key, loudness, harmony and rhythm statistics."""
    songs = []
    for key in storage.song_keys_with("theory.json"):
        song_dir = storage.song_dir(key)
        songs.append({"key": key, **{name: storage.read_json(song_dir / f"{name}.json") for name in ("song", "stems", "analysis", "theory")}})
    table = song_features_table(songs, load_or_create_secret(storage.secret_path))
    written = write_dataset(table, storage.dataset_dir("song_features"), "song_features")
    context.log.info(f"song_features: {written.rows} songs, version {written.version}")
    return dataset_result(written, table)


@dg.asset(group_name="datasets", kinds={"parquet"}, code_version="2", deps=[rendered_examples, augmented_examples],
          automation_condition=dg.AutomationCondition.eager())
def synthetic_examples(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """One row per rendered example and per augmented variant: keyed source id, instrument programs and
    SoundFonts, performance and augmentation parameters, relative paths of stems, mix and log-mel features,
    random windows, and the full labels. Partitioned by split; the split is drawn per source, so one piece
    never lands in two splits."""
    synthetic = storage.synthetic_dir()
    manifest = storage.read_json(synthetic / "augmented" / "manifest.json")
    entries = []
    for entry in manifest["examples"]:
        folder = "rendered" if entry["variant"] == "clean" else "augmented"
        entries.append({**entry, "labels": storage.read_json(synthetic / folder / entry["key"] / "labels.json"),
                        "mix_path": f"{folder}/{entry['key']}/mix.flac", "stems_path": f"rendered/{entry['source_example']}/stems",
                        "features_path": f"features/{entry['key']}.npy"})
    table = synthetic_examples_table(entries, load_or_create_secret(storage.secret_path))
    written = write_dataset(table, storage.dataset_dir("synthetic_examples"), "synthetic_examples", partition_by="split")
    splits = table.groupby("split").agg(examples=("example_id", "size"), sources=("source_id", "nunique")) if len(table) else pd.DataFrame()
    context.log.info(f"synthetic_examples: {written.rows} rows, version {written.version}")
    return dataset_result(written, table.drop(columns=["labels", "kern", "humanization", "voices", "augmentation_chain"]),
                          splits=dg.MetadataValue.md(splits.to_markdown() if len(splits) else "(empty)"))


@dg.asset(group_name="datasets", kinds={"parquet"}, code_version="1", deps=[rendered_examples],
          automation_condition=dg.AutomationCondition.eager())
def drum_hits(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Per-hit drum features (BodyE, SizzleE, GeoMean, SustainMs, spectral shape, decay) of isolated hits in the
    rendered drum stems, labelled from the MIDI; split train/validation/test by source example."""
    examples = []
    for example_dir in rendered_example_dirs(storage):
        drums, sample_rate = read_audio(example_dir / "stems" / "drums.flac")
        examples.append((storage.read_json(example_dir / "labels.json"), drums.mean(axis=0), sample_rate))
    table = drum_hits_table(examples, load_or_create_secret(storage.secret_path))
    written = write_dataset(table, storage.dataset_dir("drum_hits"), "drum_hits")
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0) if len(table) else pd.DataFrame()
    return dataset_result(written, table, class_counts=dg.MetadataValue.md(counts.to_markdown() if len(counts) else "(empty)"))

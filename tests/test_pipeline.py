"""Real Dagster runs over real audio: the `make run` path, the sensor, the Demucs path and the privacy gate."""

import json
import shutil
from pathlib import Path

import dagster as dg
import mlflow.artifacts
import numpy as np
import pytest
import yaml
from conftest import PER_SONG_ASSETS, render_groove_song
from test_separation import save_small_demucs

from pipeline_project import cli
from pipeline_project.assets.datasets import (
    concert_pairs,
    contributed_hits,
    drum_hits,
    song_features,
    synthetic_examples,
)
from pipeline_project.assets.ingestion import song_audio
from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.assets.separation import song_stems
from pipeline_project.checks import EXEMPTIONS, privacy_checks
from pipeline_project.datasets.privacy import audit_table
from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot, write_snapshot
from pipeline_project.definitions import build_definitions, default_resources, defs
from pipeline_project.resources import SeparatorResource
from pipeline_project.sensors import new_songs_sensor
from pipeline_project.training.families import DRUM_MODEL_NAME, EMBEDDING_MODEL_NAME

SONG_TAGS = [
    {
        "title": "Copper Weathervane",
        "artist": "Idris Flannery-Osei",
        "album": "Tin Roof Tapes",
        "year": "2018",
        "genre": "Rock",
    },
    {
        "title": "Lilac Switchyard",
        "artist": "Hollis Marchetti",
        "album": "Tin Roof Tapes",
        "year": "2019",
        "genre": "Funk",
    },
]


def materialization_count(instance, asset: str) -> int:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return len(records)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """Two good songs and three bad files in the drop folder, then `make run`'s code path, once per module."""
    root = tmp_path_factory.mktemp("e2e")
    data_root, home = root / "data", root / "dagster_home"
    incoming = data_root / "incoming"
    incoming.mkdir(parents=True)
    home.mkdir()
    render_groove_song(incoming / "copper_weathervane.mp3", "rock", bars=5, tempo=120, seed=1, tags=SONG_TAGS[0])
    render_groove_song(
        incoming / "lilac_switchyard.mp3", "funk", bars=5, tempo=100, seed=2, tags=SONG_TAGS[1], key="G:major"
    )
    shutil.copy(incoming / "lilac_switchyard.mp3", incoming / "lilac switchyard (copy).mp3")
    (incoming / "zero_bytes.mp3").write_bytes(b"")
    (incoming / "readme_not_audio.mp3").write_text("these are liner notes, not audio\n" * 50)
    whole = (incoming / "copper_weathervane.mp3").read_bytes()
    (incoming / "cut_short.mp3").write_bytes(whole[: len(whole) // 3])
    # The test songs last 10 s: songs here, not clips (the training export takes no song graded poor).
    (data_root / "collection.toml").write_text("[quality]\nmin_seconds = 5\n")

    patch = pytest.MonkeyPatch()
    patch.setenv("DAGSTER_HOME", str(home))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    patch.setenv("PIPELINE_K_ANONYMITY", "1")  # two songs can never be 5-anonymous; k itself is tested in test_datasets
    exit_code = cli.run(str(data_root))
    instance = dg.DagsterInstance.get()
    yield {"data_root": data_root, "instance": instance, "exit_code": exit_code}
    patch.undo()


def test_definitions_have_every_group_the_sensor_and_the_weekly_schedule():
    repository = defs.get_repository_def()
    groups = {node.group_name for node in repository.asset_graph.asset_nodes}
    assert {"ingestion", "separation", "analysis", "synthesis", "datasets", "training"} <= groups
    assert repository.get_sensor_def("new_songs_sensor").job_name == "song_pipeline_job"
    assert repository.get_sensor_def("datasets_automation_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    schedule = repository.get_schedule_def("weekly_retraining")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "UTC"
    assert all(check.check_specs and all(spec.blocking for spec in check.check_specs) for check in privacy_checks)


def test_good_songs_complete_and_bad_files_are_quarantined(pipeline_run):
    assert pipeline_run["exit_code"] == 0
    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    partitions = instance.get_dynamic_partitions(songs_partitions.name)
    assert len(partitions) == 5  # the copy shares its original's partition
    assert len(instance.get_materialized_partitions(dg.AssetKey("song_theory"))) == 2
    quarantine = data_root / "quarantine"
    reasons = {p.name.removesuffix(".reason.txt"): p.read_text() for p in quarantine.glob("*.reason.txt")}
    assert set(reasons) == {"zero_bytes.mp3", "readme_not_audio.mp3", "cut_short.mp3"}
    assert "empty file" in reasons["zero_bytes.mp3"]
    assert "not decodable" in reasons["readme_not_audio.mp3"]
    assert "truncated" in reasons["cut_short.mp3"]
    assert all((quarantine / name).exists() for name in reasons)


def test_songs_are_graded_reported_and_exported_privately_for_training(pipeline_run):
    import importlib.util

    from pipeline_project.assets.collection import training_export

    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    graded = instance.get_materialized_partitions(dg.AssetKey("song_quality"))
    assert graded == instance.get_materialized_partitions(dg.AssetKey("song_theory"))
    decided = json.loads((data_root / "lake" / "collection_quality.json").read_text())
    assert set(decided["songs"]) == graded and decided["duplicate_groups"] == []
    assert all(song["grade"] != "poor" for song in decided["songs"].values()), decided
    report = json.loads((data_root / "lake" / "collection_report.json").read_text())
    assert report["distributions"]["genre"] == {"rock": 1, "funk": 1} and report["gaps"]

    result = dg.materialize([training_export], resources=default_resources(str(data_root)), instance=instance)
    folder = Path(result.asset_materializations_for_node("training_export")[0].metadata["path"].value)
    assert folder.parent == data_root / "exports" and not (data_root / "datasets" / "exports").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["private"] and sorted(k for part in manifest["splits"].values() for k in part["songs"]) == sorted(
        graded
    )
    spec = importlib.util.spec_from_file_location(
        "loader", Path(__file__).parent.parent / "examples" / "load_training_export.py"
    )
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    exported = {song["key"]: song for split in manifest["splits"] for song in loader.songs(folder, split, workers=0)}
    assert set(exported) == graded
    for key, song in exported.items():
        lake = data_root / "lake" / "songs" / key
        assert np.array_equal(song["drums"].numpy(), sf_read(lake / "stems" / "drums.flac"))
        analysis = json.loads((lake / "analysis.json").read_text())
        assert song["labels"]["beat_times"] == analysis["beat_times"] and song["labels"]["chords"] == analysis["chords"]
        assert song["tags"]["artist"] in {tags["artist"] for tags in SONG_TAGS}


def sf_read(path):
    import soundfile as sf

    return sf.read(path, dtype="float32", always_2d=True)[0].T


def test_songs_are_analysed_by_the_registered_champions_of_the_shipped_set(pipeline_run):
    """The first run registers the shipped learned analysers in MLflow; songs use the families that became
    champions over the DSP path, and their analysis names the registry versions."""
    from pipeline_project.analysis import learned

    if not learned.available():
        pytest.skip("no shipped model set (make train-analysis)")
    registry = default_resources(str(pipeline_run["data_root"]))["mlflow"].registry()
    champions = {name for name in learned.MODEL_NAMES if registry.champion_version(name) is not None}
    assert champions == learned.load().promoted
    assert all(
        len(registry.versions(name)) == 1 for name in learned.MODEL_NAMES
    )  # parallel song runs registered it once
    songs = sorted((pipeline_run["data_root"] / "lake" / "songs").glob("*/analysis.json"))
    assert songs
    for path in songs:
        analysis = json.loads(path.read_text())
        assert analysis["analysers"]["rhythm"] == ("learned" if "beat_tracker" in champions else "dsp")
        assert sorted(analysis["models"]) == sorted(champions)
        assert all(version.startswith(f"{name}/1 ") for name, version in analysis["models"].items())


def test_datasets_are_parquet_without_private_values(pipeline_run):
    data_root = pipeline_run["data_root"]
    names = sorted(p.parent.name for p in (data_root / "datasets").glob("*/latest.json"))
    assert names == [
        "concert_pairs",
        "contributed_hits",
        "drum_hits",
        "human_labels",
        "review_queue",
        "song_features",
        "synthetic_examples",
    ]
    assert sorted(latest_manifest(data_root / "datasets" / "synthetic_examples")["partitions"]) == [
        "split=test",
        "split=train",
        "split=validation",
    ]
    private = [v for tags in SONG_TAGS for k, v in tags.items() if k in ("title", "artist", "album")]
    private += ["copper_weathervane", "lilac_switchyard", "lilac switchyard (copy)"]
    for name in names:
        table = read_snapshot(data_root / "datasets" / name)
        # Nobody has contributed or labelled anything yet.
        assert len(table) > 0 or name in ("contributed_hits", "human_labels"), name
        text = table.drop(columns=["clean_logmel", "degraded_logmel"], errors="ignore").astype(str).to_csv().casefold()
        assert not [value for value in private if value.casefold() in text], name
        exempt = EXEMPTIONS.get(name, {})
        assert audit_table(table, {v.casefold() for v in private}, **exempt) == []
    features = read_snapshot(data_root / "datasets" / "song_features")
    assert len(features) == 2 and set(features["tempo_bpm"] % 5) == {0}


GROUP_OF = {
    "song_features": "song_id",
    "drum_hits": "group_id",
    "synthetic_examples": "source_id",
    "concert_pairs": "track_id",
    "contributed_hits": "group_id",
}


def test_no_group_spans_two_splits_in_any_dataset(pipeline_run):
    for name, group in GROUP_OF.items():
        table = read_snapshot(pipeline_run["data_root"] / "datasets" / name)
        assert table.groupby(group)["split"].nunique().max() <= 1 if len(table) else True, name
        assert set(table["split"]) <= {"train", "validation", "test"}, name


def test_the_same_inputs_give_snapshots_with_identical_files(pipeline_run):
    data_root = pipeline_run["data_root"]
    before = {name: latest_manifest(data_root / "datasets" / name) for name in GROUP_OF}
    assets = [song_features, synthetic_examples, drum_hits, concert_pairs, contributed_hits]
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets, resources=default_resources(str(data_root)), instance=instance).success
    for name, manifest in before.items():
        again = latest_manifest(data_root / "datasets" / name)
        assert again["snapshot_id"] == manifest["snapshot_id"], name
        assert {k: v["sha256"] for k, v in again["files"].items()} == {
            k: v["sha256"] for k, v in manifest["files"].items()
        }


@pytest.mark.parametrize("field", ["title", "artist", "album", "file name", "path"])
def test_privacy_check_fails_on_every_planted_private_value(pipeline_run, field):
    """Each private value planted into a dataset column makes the blocking check fail; the clean data passes."""
    data_root = pipeline_run["data_root"]
    root = data_root / "datasets" / "song_features"
    clean = latest_manifest(root)
    value = {
        "title": SONG_TAGS[0]["title"],
        "artist": SONG_TAGS[1]["artist"],
        "album": SONG_TAGS[0]["album"],
        "file name": "copper_weathervane.mp3",
        "path": "/home/someone/Music/x",
    }[field]
    planted = read_snapshot(root)
    planted["genre"] = planted["genre"].astype(str) + " " + value.upper()
    check = dg.AssetSelection.checks(dg.AssetCheckKey(song_features.key, "privacy_audit"))
    resources = default_resources(str(data_root))
    try:
        for table, should_pass in ((planted, False), (read_snapshot(root, clean["snapshot_id"]), True)):
            write_snapshot(table, root, "song_features")
            with dg.instance_for_test() as instance:
                result = dg.materialize(
                    [song_features, *privacy_checks],
                    resources=resources,
                    instance=instance,
                    selection=check,
                    raise_on_error=False,
                )
                evaluation = result.get_asset_check_evaluations()[0]
            assert evaluation.passed == should_pass, (field, evaluation.metadata["details"])
    finally:
        write_snapshot(read_snapshot(root, clean["snapshot_id"]), root, "song_features")


def test_model_is_champion_and_traceable_to_dataset_and_run(pipeline_run):
    import mlflow

    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{data_root / 'mlflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(DRUM_MODEL_NAME, "champion")
    manifest = latest_manifest(data_root / "datasets" / "drum_hits")
    assert champion.tags["dataset_snapshot"] == manifest["snapshot_id"]
    assert instance.get_run_by_id(champion.tags["dagster_run_id"]) is not None
    event = instance.get_latest_materialization_event(dg.AssetKey("drum_hit_classifier"))
    metadata = event.asset_materialization.metadata
    assert metadata["mlflow_run_id"].value == champion.run_id
    assert metadata["model_version"].value == str(champion.version)
    assert "**robust**: open when" in metadata["hihat_rules"].value
    rules = json.loads(
        client.download_artifacts(champion.run_id, "hihat_rules.json", str(data_root / "rules_download"))
        and (data_root / "rules_download" / "hihat_rules.json").read_text()
    )
    assert set(rules) == {"simple", "balanced", "robust"} and rules["robust"]["rule"].startswith("open when")


def trained_materialization(instance, asset: str):
    """The latest materialization of a model asset that trained a version (later ones may have skipped)."""
    for record in instance.fetch_materializations(dg.AssetKey(asset), limit=100).records:
        metadata = record.asset_materialization.metadata
        if metadata.get("trained") and metadata["trained"].value:
            return metadata
    return None


def test_embedding_version_leads_to_its_snapshot_and_run_and_back(pipeline_run):
    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    registry = default_resources(str(data_root))["mlflow"].registry()
    champion = registry.champion_version(EMBEDDING_MODEL_NAME)
    assert champion.tags["dataset_snapshot"] == latest_manifest(data_root / "datasets" / "concert_pairs")["snapshot_id"]
    assert instance.get_run_by_id(champion.tags["dagster_run_id"]) is not None
    metadata = trained_materialization(instance, EMBEDDING_MODEL_NAME)
    assert metadata["mlflow_run_id"].value == champion.run_id and metadata["model_version"].value == str(
        champion.version
    )
    card = registry.model_card(EMBEDDING_MODEL_NAME, champion.version)
    assert set(card["performance"]["retrieval"]) == {"torch", "onnx_float", "onnx_int8"}
    # The ONNX exports are ONNX models of the run, with the network's signature; the snapshot is the run's input.
    run = registry.client.get_run(champion.run_id)
    logged = {
        model.name: model
        for model in (registry.client.get_logged_model(output.model_id) for output in run.outputs.model_outputs)
    }
    assert set(logged) == {"model", "onnx", "onnx_int8"}
    for name in ("onnx", "onnx_int8"):
        mlmodel = yaml.safe_load(
            Path(mlflow.artifacts.download_artifacts(f"{logged[name].artifact_location}/MLmodel")).read_text()
        )
        assert "onnx" in mlmodel["flavors"] and mlmodel["signature"]["inputs"]
    (snapshot,) = run.inputs.dataset_inputs
    assert (snapshot.dataset.name, snapshot.dataset.digest) == ("concert_pairs", champion.tags["dataset_snapshot"])


def test_weekly_job_twice_without_new_data_registers_nothing_and_says_why(pipeline_run, monkeypatch):
    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    monkeypatch.setenv("DAGSTER_HOME", str(instance.root_directory))
    resources = default_resources(str(data_root))
    registry = resources["mlflow"].registry()
    models = (DRUM_MODEL_NAME, EMBEDDING_MODEL_NAME)
    before = {m: (len(registry.versions(m)), registry.champion_version(m).version) for m in models}
    definitions = build_definitions(resources)
    job = definitions.resolve_job_def(definitions.resolve_schedule_def("weekly_retraining").job.name)
    for _ in range(2):
        assert job.execute_in_process(instance=instance).success
    assert {m: (len(registry.versions(m)), registry.champion_version(m).version) for m in models} == before
    for model in models:
        metadata = instance.get_latest_materialization_event(dg.AssetKey(model)).asset_materialization.metadata
        assert metadata["trained"].value is False and "no new data" in metadata["reason"].value


def test_second_run_does_no_per_song_work_and_a_new_song_adds_one_partition(pipeline_run, monkeypatch):
    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    monkeypatch.setenv("DAGSTER_HOME", str(instance.root_directory))
    before = {asset: materialization_count(instance, asset) for asset in PER_SONG_ASSETS}
    partitions_before = set(instance.get_dynamic_partitions(songs_partitions.name))
    assert cli.run(str(data_root)) == 0
    assert {asset: materialization_count(instance, asset) for asset in PER_SONG_ASSETS} == before

    render_groove_song(
        data_root / "incoming" / "third_song.mp3",
        "waltz",
        bars=6,
        tempo=110,
        seed=3,
        tags={"title": "Third Song", "artist": "Nobody"},
    )
    assert cli.run(str(data_root)) == 0
    new_partitions = set(instance.get_dynamic_partitions(songs_partitions.name)) - partitions_before
    assert len(new_partitions) == 1
    assert {asset: materialization_count(instance, asset) for asset in PER_SONG_ASSETS} == {
        a: n + 1 for a, n in before.items()
    }
    latest = instance.get_latest_materialization_event(dg.AssetKey("song_theory"))
    assert latest.dagster_event.partition == next(iter(new_partitions))


def test_privacy_check_blocks_a_leaking_dataset(pipeline_run, tmp_path):
    """A catalog value that shows up in a dataset makes the blocking check fail the run."""
    data_root = pipeline_run["data_root"]
    # A song titled like a value the dataset really holds (the short test songs' duration bucket): the audit
    # must treat it as a leak.
    leaking = data_root / "lake" / "songs" / "leakyleakyleaky0"
    leaking.mkdir(parents=True)
    (leaking / "song.json").write_text(json.dumps({"title": "<30s", "file_names": ["x.mp3"]}))
    try:
        resources = default_resources(str(data_root))
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [song_features, privacy_checks[0]],
                resources=resources,
                instance=instance,
                raise_on_error=False,
                selection=[song_features],
            )
            evaluations = result.get_asset_check_evaluations()
        assert not result.success
        assert evaluations and not evaluations[0].passed and evaluations[0].check_name == "privacy_audit"
    finally:
        shutil.rmtree(leaking)


def test_sensor_adds_partitions_and_requests_runs_for_new_songs(data_root):
    render_groove_song(data_root / "incoming" / "one.mp3", seed=11)
    shutil.copy(data_root / "incoming" / "one.mp3", data_root / "incoming" / "one again.mp3")
    render_groove_song(data_root / "incoming" / "two.mp3", seed=12)
    resources = default_resources(str(data_root))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"storage": resources["storage"], "song_runs": resources["song_runs"]}
        )
        result = new_songs_sensor(context)
        keys = sorted(r.partition_key for r in result.run_requests)
        assert len(keys) == 2
        assert {r.tags["pipeline_project/source_file"] for r in result.run_requests} <= {
            "one.mp3",
            "one again.mp3",
            "two.mp3",
        }
        assert sorted(result.dynamic_partitions_requests[0].partition_keys) == keys
        instance.add_dynamic_partitions(songs_partitions.name, keys)
        again = new_songs_sensor(
            dg.build_sensor_context(
                instance=instance, resources={"storage": resources["storage"], "song_runs": resources["song_runs"]}
            )
        )
        assert not again.run_requests


def test_demucs_path_inside_dagster_records_model_and_checksum(data_root, tmp_path):
    render_groove_song(data_root / "incoming" / "song.mp3", bars=3, seed=21)
    models = save_small_demucs(tmp_path / "models", "small_demucs")
    resources = default_resources(str(data_root))
    resources["separator"] = SeparatorResource(model_name="small_demucs", model_dir=str(models), device="cpu")
    with dg.instance_for_test() as instance:
        from pipeline_project.audio.io import content_hash

        key = content_hash(data_root / "incoming" / "song.mp3")
        instance.add_dynamic_partitions(songs_partitions.name, [key])
        result = dg.materialize([song_audio, song_stems], partition_key=key, resources=resources, instance=instance)
        metadata = result.asset_materializations_for_node("song_stems")[0].metadata
    assert metadata["separator"].value == "demucs"
    assert metadata["model_name"].value == "small_demucs"
    assert len(metadata["weights_sha256"].value) == 64
    stems = sorted(p.name for p in (data_root / "lake" / "songs" / key / "stems").iterdir())
    assert stems == ["bass.flac", "drums.flac", "other.flac", "vocals.flac"]


def test_default_resources_follow_the_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    resources = default_resources(str(tmp_path))
    assert resources["storage"].root == tmp_path.resolve()
    assert resources["mlflow"].tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    assert (
        build_definitions(resources).get_repository_def().get_job("song_pipeline_job").partitions_def
        == songs_partitions
    )


def test_ui_metadata_shows_voices_and_chains_and_listening_samples_are_written(pipeline_run):
    import soundfile

    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    rendered = instance.get_latest_materialization_event(
        dg.AssetKey("rendered_examples")
    ).asset_materialization.metadata
    table = rendered["examples_table"].value
    assert "TimGM6mb" in table and "drum_kit" in table and "piano" in table
    assert rendered["sources"].value.count("public domain") >= 8
    augmented = instance.get_latest_materialization_event(
        dg.AssetKey("augmented_examples")
    ).asset_materialization.metadata
    chains = augmented["chains"].value
    assert "room arena" in chains and "crowd noise" in chains and "stretch x" in chains
    listening = data_root / "datasets" / "synthetic_examples" / "listening"
    for preset in ("clean", "concert", "room", "noise", "phone", "codec", "stretch"):
        info = soundfile.info(str(listening / f"{preset}.mp3"))
        assert info.duration >= 59.0, preset
    rows = read_snapshot(data_root / "datasets" / "synthetic_examples")
    assert rows.groupby("source_id")["split"].nunique().max() == 1  # one piece never spans two splits
    assert set(rows["variant"]) == {"clean", "augmented"} and (rows["features_path"].str.endswith(".npy")).all()
    features = np.load(data_root / "lake" / "synthetic" / rows["features_path"].iloc[0])
    assert features.shape[0] == 128


def test_song_metadata_shows_tempo_key_chords_plot_and_separator(pipeline_run):
    instance = pipeline_run["instance"]
    analysis = instance.get_latest_materialization_event(dg.AssetKey("song_analysis")).asset_materialization.metadata
    assert analysis["plot"].value.startswith("![waveform, beats and sections](data:image/png;base64,")
    assert analysis["separator"].value.startswith("dsp-fallback") and analysis["tempo_bpm"].value > 0
    assert analysis["sections"].value.startswith("A")
    theory = instance.get_latest_materialization_event(dg.AssetKey("song_theory")).asset_materialization.metadata
    assert theory["chord_timeline"].value.startswith("| time | chord | Roman numeral | function | section |")
    assert theory["key"].value and theory["tempo_bpm"].value > 0


def test_accuracy_checks_score_separation_and_analysis_of_rendered_examples(pipeline_run):
    storage = pipeline_run["instance"].event_log_storage
    keys = [
        dg.AssetCheckKey(dg.AssetKey("rendered_examples"), name) for name in ("separation_sdr", "analysis_accuracy")
    ]
    records = storage.get_latest_asset_check_execution_by_key(keys)
    assert set(records) == set(keys)
    separation = records[keys[0]].event.dagster_event.event_specific_data.metadata
    analysis = records[keys[1]].event.dagster_event.event_specific_data.metadata
    assert separation["separator"].value.startswith("dsp-fallback") and "improvement_db" in separation["per_stem"].value
    assert separation["mean_improvement_db"].value > 0  # the fallback must still beat the mixture as an estimate
    assert 0.0 <= analysis["beat_f"].value <= 1.0 and 0.0 <= analysis["chord_majmin"].value <= 1.0
    assert analysis["examples"].value == 4


def test_models_and_runs_carry_no_machine_paths_or_user_name(pipeline_run):
    """What MLflow keeps of a run (tags, params, logged models, every artifact byte) names no path of this machine
    (the data root, the repository, the home folder) and not the user; the store's own artifact locations aside."""
    import getpass
    from pathlib import Path

    import mlflow

    from pipeline_project.settings import PROJECT_ROOT

    data_root = pipeline_run["data_root"]
    needles = {str(data_root), str(PROJECT_ROOT), str(Path.home()), f"/{getpass.getuser()}/", f'"{getpass.getuser()}"'}
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{data_root / 'mlflow' / 'mlflow.db'}")
    runs = [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]
    assert runs
    for run in runs:
        text = json.dumps({"tags": run.data.tags, "params": run.data.params})
        assert not [n for n in needles if n in text], (run.info.run_id, text)
        if run.outputs and run.outputs.model_outputs:
            for output in run.outputs.model_outputs:
                logged = client.get_logged_model(output.model_id)
                text = json.dumps({"tags": logged.tags, "params": logged.params})
                assert not [n for n in needles if n in text], (output.model_id, text)
    leaking = []
    for path in (data_root / "mlflow" / "artifacts").rglob("*"):
        content = path.read_bytes() if path.is_file() else b""
        if path.name == "MLmodel":  # its artifact_path is where this store keeps the model, written by MLflow
            content = b"\n".join(line for line in content.splitlines() if not line.startswith(b"artifact_path:"))
        if any(n.encode() in content for n in needles):
            leaking.append(str(path))
    assert not leaking
    # Every file name of a duplicated song is a private term of the audit.
    records = [json.loads(p.read_text()) for p in (data_root / "lake" / "songs").glob("*/song.json")]
    assert ["lilac switchyard (copy).mp3", "lilac_switchyard.mp3"] in [sorted(r["file_names"]) for r in records]


def test_the_song_index_holds_every_song_and_identify_says_no_match_to_noise(pipeline_run, tmp_path, capsys):
    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    metadata = instance.get_latest_materialization_event(dg.AssetKey("song_index")).asset_materialization.metadata
    # Every finished song: two from the first run, three once an earlier test of this module has added one.
    finished = default_resources(str(data_root))["storage"].finished_song_keys()
    assert metadata["songs"].value == len(finished) >= 2 and metadata["kind"].value == "exact"
    assert metadata["recall_at_1"].value == 1.0 and metadata["embedding_version"].value.startswith(EMBEDDING_MODEL_NAME)
    # How far ahead of the others seeded noise puts a song in this index, and so the lead an answer needs: a
    # small collection's embedding, trained on a few songs, may put noise near one of them.
    assert metadata["noise_score"].value > 0
    assert metadata["answer_lead_needs"].value == round(1.5 * metadata["noise_score"].value, 4)
    rate = 44_100
    noise = np.random.default_rng(0).normal(size=(2, 5 * rate)).astype(np.float32)
    import soundfile as sf

    sf.write(tmp_path / "noise.wav", noise.T * 0.05, rate)
    assert cli.main(["identify", str(tmp_path / "noise.wav"), "--data-root", str(data_root)]) == 3
    out = capsys.readouterr().out
    assert "(default preset: an answer needs a score of 0.50" in out and out.strip().endswith("noise.wav: no match")
    assert cli.main(["identify", str(tmp_path / "noise.wav"), "--strict", "--data-root", str(data_root)]) == 3
    out = capsys.readouterr().out
    assert "(strict preset: an answer needs a score of 1.50" in out and out.strip().endswith("noise.wav: no match")
    assert cli.main(["identify", str(tmp_path / "missing.wav"), "--data-root", str(data_root)]) == 1


@pytest.mark.xfail(
    reason="the demo's embedding, trained on the concert pairs of a few demo renders, does not gather the default "
    "preset's evidence within 5 s of a 2-song catalog of 10 s grooves; the embedding trained on a real collection "
    "is measured by benchmarks/bench_streaming.py",
    strict=False,
)
def test_identify_names_the_song_in_a_noisy_recording(pipeline_run, tmp_path, capsys):
    import soundfile as sf

    from pipeline_project.audio.io import read_audio

    data_root = pipeline_run["data_root"]
    storage = default_resources(str(data_root))["storage"]
    (key,) = [k for k in storage.finished_song_keys() if "Copper" in storage.song(k).record.read_text()]
    audio, rate = read_audio(storage.song(key).audio)
    excerpt = audio[:, 2 * rate : 7 * rate]
    noise = np.random.default_rng(0).normal(size=excerpt.shape).astype(np.float32)
    sf.write(tmp_path / "heard.wav", (excerpt + noise * np.sqrt(np.mean(excerpt**2) / np.mean(noise**2) / 10)).T, rate)
    assert cli.main(["identify", str(tmp_path / "heard.wav"), "--data-root", str(data_root)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"{tmp_path / 'heard.wav'}: Idris Flannery-Osei - Copper Weathervane [{key}]"), last


def test_people_label_hits_on_the_page_and_the_next_model_learns_from_them(pipeline_run, monkeypatch):
    """The labeling page (the command `make label` runs) over the run's data root, driven by keyboard in headless
    Chromium: ten labels, one undone, progress kept over a reload. Then the loop: the labels released through
    their privacy audit, the drum-hit classifier retrained with them (its version and card count them), and
    the labelled hits gone from the review queue."""
    import os
    import sys

    import pandas as pd
    from browser import browser_page
    from servers import free_port, serving

    instance, data_root = pipeline_run["instance"], pipeline_run["data_root"]
    monkeypatch.setenv("DAGSTER_HOME", str(instance.root_directory))
    assets = build_definitions(default_resources(str(data_root))).resolve_implicit_global_asset_job_def()

    def materialize(*names: str, run_config: dict | None = None):
        result = assets.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(name) for name in names],
            run_config=run_config or {},
            raise_on_error=False,
        )
        assert result.success, names
        return instance.get_latest_materialization_event(dg.AssetKey(names[-1])).asset_materialization.metadata

    # A band wide enough that the two-song demo has ten hits to ask about.
    wide = {"ops": {"review_queue": {"config": {"lowest_confidence": 0.0, "highest_confidence": 1.0}}}}
    materialize("review_queue", run_config=wide)
    assert len(read_snapshot(data_root / "datasets" / "review_queue")) >= 12

    def done(page, count: int) -> None:
        page.wait_for_function(
            f"document.querySelector('#progress-text').textContent.startsWith('done {count} ·')", timeout=15_000
        )

    port = free_port()
    command = [sys.executable, "-m", "pipeline_project", "label", "--port", str(port), "--data-root", str(data_root)]
    shots = Path(os.environ.get("PIPELINE_SCREENSHOTS", data_root / "screenshots"))
    with serving(command, port, "the labeling page", env=dict(os.environ)), browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#item-id:not(:empty)")
        for count in range(1, 11):
            # Alternately a class key (1: the first class) and Enter (the model's guess).
            page.keyboard.press("1" if count % 2 else "Enter")
            done(page, count)
            if count == 6:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=shots / "labeling-page.png")
        page.keyboard.press("z")
        done(page, 9)
        page.reload()
        page.wait_for_selector("#item-id:not(:empty)")
        done(page, 9)
        page.keyboard.press("b")
        page.keyboard.press("x")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("x")
        page.screenshot(path=shots / "labeling-batch.png")
    store = json.loads((data_root / "lake" / "labels" / "store" / "drum_hits.json").read_text())["labels"]
    assert len(store) == 9

    released = materialize("human_labels")
    table = read_snapshot(data_root / "datasets" / "human_labels")  # published: its privacy audit passed
    assert released["rows"].value == len(table) == 9 and set(table["queue"]) == {"drum_hits"}
    assert not {item for item in store} & set(table.astype(str).to_numpy().ravel())  # no item names leave

    trained = materialize("drum_hit_classifier")
    assert trained["trained"].value is True, trained.get("reason")
    card = trained["model_card"].value
    # The hits the champion is least sure of are mostly ones it never trained on: some labels land in every split.
    assert card["training"]["human_labels"] == 9 and 0 <= card["training"]["human_labels_train"] <= 9
    registry = default_resources(str(data_root))["mlflow"].registry()
    version = registry.versions(DRUM_MODEL_NAME)[-1]
    assert (
        version.tags["human_labels"] == "9" and version.tags["human_labels_snapshot"] == released["snapshot_id"].value
    )

    queue_metadata = materialize("review_queue", run_config=wide)
    queue = read_snapshot(data_root / "datasets" / "review_queue")
    hits = latest_manifest(data_root / "datasets" / "drum_hits")["snapshot_id"]
    sources = pd.read_parquet(data_root / "lake" / "labels" / "hit_sources" / f"{hits}.parquet")
    items = {f"{e}@{round(o * 1000)}" for e, o in zip(sources["example"], sources["onset"])}
    queued = sources[sources["hit_id"].isin(queue["hit_id"])]
    assert queue_metadata["labelled_by_people"].value == 9 and set(store) <= items
    assert not {f"{e}@{round(o * 1000)}" for e, o in zip(queued["example"], queued["onset"])} & set(store)
    assert (shots / "labeling-page.png").stat().st_size > 10_000

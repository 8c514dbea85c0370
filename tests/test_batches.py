"""Backfills in batches: one run covers many song partitions, and a bad song in a batch still ends up failing on
its own partition while the others finish."""

import dagster as dg
import pytest
from conftest import PER_SONG_ASSETS, render_groove_song

from pipeline_project import cli
from pipeline_project.assets.partitions import file_tags, songs_partitions
from pipeline_project.audio.ingest import scan_incoming
from pipeline_project.definitions import build_definitions, default_resources
from pipeline_project.planning import NEW_SONGS, SongRun, batch_run_key
from pipeline_project.resources import SongRunsResource
from pipeline_project.sensors import new_songs_sensor, split_failed_batches


def batch_tags(files: dict[str, str]) -> dict[str, str]:
    return file_tags(SongRun(tuple(files), batch_run_key(files), NEW_SONGS, files))


@pytest.fixture
def drop(data_root):
    """Three songs in the drop folder with a text file named .mp3 between them, each a partition in that order."""
    incoming = data_root / "incoming"
    render_groove_song(incoming / "a_first.mp3", "rock", bars=3, tempo=120, seed=21)
    (incoming / "b_liner_notes.mp3").write_text("not audio\n" * 40)
    render_groove_song(incoming / "c_second.mp3", "funk", bars=3, tempo=100, seed=22)
    render_groove_song(incoming / "d_third.mp3", "rock", bars=3, tempo=110, seed=23)
    found = scan_incoming(incoming)
    files = {key: paths[0].name for key, paths in sorted(found.items(), key=lambda item: item[1][0].name)}
    return data_root, files


def materialized(instance, key: str) -> set[str]:
    return {stage for stage in PER_SONG_ASSETS if key in instance.get_materialized_partitions(dg.AssetKey(stage))}


def test_a_batch_run_covers_every_song_and_reports_each_in_a_table(data_root, dagster_home):
    incoming = data_root / "incoming"
    for seed, name in enumerate(("one.mp3", "two.mp3", "three.mp3")):
        render_groove_song(incoming / name, "rock", bars=3, tempo=104 + 6 * seed, seed=30 + seed)
    files = {key: paths[0].name for key, paths in scan_incoming(incoming).items()}
    defs = build_definitions(default_resources(str(data_root)))
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(songs_partitions.name, list(files))
    result = defs.resolve_job_def("song_pipeline_job").execute_in_process(instance=instance, tags=batch_tags(files))
    assert result.success
    assert len(instance.get_run_records()) == 1
    for key in files:
        assert materialized(instance, key) == set(PER_SONG_ASSETS)
        assert (data_root / "lake" / "songs" / key / "theory.json").exists()
    metadata = result.asset_materializations_for_node("song_analysis")[0].metadata
    assert metadata["songs"].value == 3
    table = metadata["batch"].value
    assert all(key in table for key in files) and "tempo_bpm" in table


def test_a_bad_song_stops_its_batch_and_then_fails_alone_while_the_others_finish(drop, dagster_home):
    data_root, files = drop
    defs = build_definitions(default_resources(str(data_root)))
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(songs_partitions.name, list(files))
    job = defs.resolve_job_def("song_pipeline_job")
    batch = job.execute_in_process(instance=instance, tags=batch_tags(files), raise_on_error=False)
    assert not batch.success
    failure = next(event for event in batch.all_events if event.event_type == dg.DagsterEventType.RUN_FAILURE)

    context = dg.build_run_status_sensor_context(
        sensor_name="split_failed_batches",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=batch.dagster_run,
    ).for_run_failure()
    requests = split_failed_batches(context)
    assert [request.partition_key for request in requests] == list(files)
    for request in requests:
        assert request.tags["pipeline_project/source_file"] == files[request.partition_key]
        run = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            asset_selection=request.asset_selection,
            raise_on_error=False,
        )
        bad = files[request.partition_key] == "b_liner_notes.mp3"
        assert run.success != bad
        if bad:
            reason = next(e for e in run.all_events if e.is_step_failure).step_failure_data.error.message
            assert "not decodable as audio" in reason and "already quarantined" in reason  # its own reason, again
    for key, name in files.items():
        assert materialized(instance, key) == (set() if name == "b_liner_notes.mp3" else set(PER_SONG_ASSETS))
    assert (data_root / "quarantine" / "b_liner_notes.mp3.reason.txt").exists()


def test_a_large_drop_is_batched_by_the_sensor_and_by_run(drop, dagster_home, monkeypatch, capsys):
    data_root, files = drop
    monkeypatch.setenv("PIPELINE_SONGS_PER_RUN", "2")
    resources = default_resources(str(data_root))
    assert resources["song_runs"].songs_per_run == 2
    with dg.instance_for_test() as instance:
        result = new_songs_sensor(
            dg.build_sensor_context(
                instance=instance,
                resources={"storage": resources["storage"], "song_runs": SongRunsResource(songs_per_run=2)},
            )
        )
        ranges = [
            (r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"))
            for r in result.run_requests
        ]
        new_keys = result.dynamic_partitions_requests[0].partition_keys
        assert ranges == [(new_keys[0], new_keys[1]), (new_keys[2], new_keys[3])]

    monkeypatch.setenv("PIPELINE_K_ANONYMITY", "1")
    assert cli.run(str(data_root), songs_only=True) == 0
    said = capsys.readouterr().out
    assert "2 new songs in one run" in said and "its songs go on one to a run" in said
    assert "b_liner_notes.mp3: " in said  # the bad file's own failure, with its reason
    instance = dg.DagsterInstance.get()
    for key, name in files.items():
        assert materialized(instance, key) == (set() if name == "b_liner_notes.mp3" else set(PER_SONG_ASSETS))

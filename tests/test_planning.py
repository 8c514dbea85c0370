"""The run planner on its own: which songs are new, how they batch, what a failed batch splits into, and which
songs `run` leaves to runs already working on them."""

from pipeline_project.planning import (
    NEW_SONGS,
    PER_SONG_STAGES,
    SPLIT_BATCHES,
    keys_in_range,
    plan_new_songs,
    plan_pending,
    plan_split,
    song_batches,
    songs_per_run,
    stages_lacking,
)

ALL = PER_SONG_STAGES


def test_fresh_neighbours_share_runs_and_begun_songs_run_alone():
    order = list("abcdefghij")
    fresh = set("abcdfghij")  # e was begun earlier
    assert song_batches(order, fresh, fresh | {"e"}, 3) == [["a", "b", "c"], ["d"], ["e"], ["f", "g", "h"], ["i", "j"]]
    assert song_batches(order, set("ab"), set("abz"), 1) == [["a"], ["b"]]
    assert song_batches(order, set("ac"), set("ac"), 5) == [["a"], ["c"]], "b lies between them: a range would cover it"


def test_a_few_new_songs_get_a_run_each_and_a_backfill_gets_batches():
    assert songs_per_run(3, 25) == 1 and songs_per_run(26, 25) == 25
    files = {key: f"{key}.mp3" for key in "edcba"}
    new_keys, runs = plan_new_songs(files, known=["a"], batch_size=25)
    assert new_keys == ["b", "c", "d", "e"]
    assert [(run.keys, run.run_key, run.sensor, run.stages) for run in runs] == [
        (("b",), "b", NEW_SONGS, None),
        (("c",), "c", NEW_SONGS, None),
        (("d",), "d", NEW_SONGS, None),
        (("e",), "e", NEW_SONGS, None),
    ]
    _, runs = plan_new_songs(files, known=[], batch_size=2)
    assert [(run.keys, run.run_key, dict(run.files)) for run in runs] == [
        (("a", "b"), "a..b", {"a": "a.mp3", "b": "b.mp3"}),
        (("c", "d"), "c..d", {"c": "c.mp3", "d": "d.mp3"}),
        (("e",), "e", {"e": "e.mp3"}),
    ]
    assert plan_new_songs(files, known=files, batch_size=2) == ([], [])


def test_run_resumes_begun_songs_and_leaves_songs_in_flight_to_their_runs():
    files = {key: f"{key}.flac" for key in "abcd"}
    done = {
        "song_audio": {"b", "d"},
        "song_quality": {"d"},
        "song_stems": {"d"},
        "song_analysis": {"d"},
        "song_theory": {"d"},
    }
    lacking = stages_lacking(files, done)
    assert lacking == {"a": ALL, "b": ALL[1:], "c": ALL, "d": ()}
    runs, left = plan_pending(list("abcd"), files, lacking, batch_size=25, in_flight={"c": "run-1"})
    assert left == {"c": "run-1"}
    assert [(run.keys, run.stages, run.run_key) for run in runs] == [(("a",), None, "a"), (("b",), ALL[1:], "b")]


def test_a_failed_batch_splits_into_one_run_per_song_for_what_it_lacks():
    order = list("abcde")
    keys = keys_in_range(order, "b", "d")
    assert keys == ["b", "c", "d"] and keys_in_range(order, "b", "z") is None
    lacking = stages_lacking(
        keys,
        {
            "song_audio": {"b", "c", "d"},
            "song_quality": {"d"},
            "song_stems": {"d"},
            "song_analysis": {"d"},
            "song_theory": {"d"},
        },
    )
    runs = plan_split("run-9", keys, lacking, {"b": "b.mp3", "c": "c.mp3", "d": "d.mp3"})
    assert [(run.keys, run.stages, run.run_key, run.sensor, dict(run.files)) for run in runs] == [
        (("b",), ALL[1:], "run-9:b", SPLIT_BATCHES, {"b": "b.mp3"}),
        (("c",), ALL[1:], "run-9:c", SPLIT_BATCHES, {"c": "c.mp3"}),
    ]


def test_the_song_job_is_made_of_the_per_song_stages_and_nothing_else():
    from pipeline_project.definitions import defs

    job = defs.resolve_job_def("song_pipeline_job")
    assert sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys) == sorted(PER_SONG_STAGES)
    graph = defs.resolve_asset_graph()
    per_song = {
        node.key.to_user_string()
        for node in graph.asset_nodes
        if node.partitions_def is not None and getattr(node.partitions_def, "name", None) == "songs"
    }
    assert per_song == set(PER_SONG_STAGES)

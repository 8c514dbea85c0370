import json
from collections import Counter

from conftest import rendered_hits

from pipeline_project.audio.io import decode_song
from pipeline_project.datasets.contributions import reference_from, validate_submission
from pipeline_project.synthesis.demo import DEMO_SONGS, MIN_SONG_SECONDS, write_demo_contribution, write_demo_songs


def test_demo_songs_are_tagged_mp3s_with_ground_truth(tmp_path):
    incoming, truth = tmp_path / "incoming", tmp_path / "ground_truth"
    paths = write_demo_songs(incoming, truth, log=lambda message: None)
    assert len(paths) == len(DEMO_SONGS)
    # Enough songs of each genre for song_features at the default k = 5, and several genres for the classifier.
    assert set(Counter(song.tags["genre"] for song in DEMO_SONGS).values()) == {5} and len(DEMO_SONGS) == 15
    for song, path in zip(DEMO_SONGS, paths):
        assert path.suffix == ".mp3" and path.parent == incoming
        decoded = decode_song(path, tmp_path / "decoded.flac")
        assert MIN_SONG_SECONDS <= decoded.duration_s < 30
        assert {k: decoded.tags[k] for k in ("title", "artist", "album", "year", "genre")} == song.tags
        labels = json.loads((truth / song.slug / "labels.json").read_text())
        assert labels["beats"] and labels["chords"] and ":" in labels["key"]
        assert {n["stem"] for n in labels["notes"]} == {"drums", "bass", "other", "vocals"}
        assert sorted(p.name for p in (truth / song.slug / "stems").iterdir()) == [
            "bass.flac",
            "drums.flac",
            "other.flac",
            "vocals.flac",
        ]
    assert not any(truth in p.parents for p in incoming.iterdir())

    submission = write_demo_contribution(truth, tmp_path / "contributions" / "incoming", log=lambda message: None)
    verdict, _ = validate_submission(submission, reference_from(None, []))
    assert not verdict.accepted and "nothing to check it against" in verdict.reasons[0]  # no local hits: not judged
    verdict, kept = validate_submission(submission, reference_from(rendered_hits(1), []))
    assert verdict.accepted, verdict.reasons
    assert kept == json.loads(submission.read_text())
    features = json.loads(submission.read_text())["features"]
    assert len({tuple(sorted(row.items())) for row in features}) == len(features)  # each distinct hit once

import json

from pipeline_project.audio.io import decode_song
from pipeline_project.synthesis.demo import DEMO_SONGS, write_demo_songs


def test_demo_songs_are_tagged_mp3s_with_ground_truth(tmp_path):
    incoming, truth = tmp_path / "incoming", tmp_path / "ground_truth"
    paths = write_demo_songs(incoming, truth, log=lambda message: None)
    assert len(paths) == len(DEMO_SONGS) >= 4
    for song, path in zip(DEMO_SONGS, paths):
        assert path.suffix == ".mp3" and path.parent == incoming
        decoded = decode_song(path)
        assert decoded.duration_s >= 30
        assert {k: decoded.tags[k] for k in ("title", "artist", "album", "year", "genre")} == song.tags
        labels = json.loads((truth / song.slug / "labels.json").read_text())
        assert labels["beats"] and labels["chords"] and ":" in labels["key"]
        assert {n["stem"] for n in labels["notes"]} == {"drums", "bass", "other", "vocals"}
        assert sorted(p.name for p in (truth / song.slug / "stems").iterdir()) == ["bass.flac", "drums.flac", "other.flac", "vocals.flac"]
    assert not any(truth in p.parents for p in incoming.iterdir())

"""The on-disk contract: a song's folder, the synthetic corpus and the contributions inbox."""

import json
import os
from pathlib import Path

from pipeline_project.layout import ContributionsInbox, SongFolder, SyntheticCorpus, free_name


def test_a_song_folder_names_every_stage_file(tmp_path):
    song = SongFolder(tmp_path / "abc")
    assert [p.name for p in song.records().values()] == ["song.json", "stems.json", "analysis.json", "theory.json"]
    assert song.stem("drums") == tmp_path / "abc" / "stems" / "drums.flac" and song.audio.name == "audio.flac"


def test_the_corpus_gives_paths_relative_to_itself_as_datasets_record_them(tmp_path):
    corpus = SyntheticCorpus(tmp_path / "synthetic")
    assert corpus.relative(corpus.example("ex-1", "clean").mix) == "rendered/ex-1/mix.flac"
    assert corpus.relative(corpus.example("ex-1-a0", "augmented").labels) == "augmented/ex-1-a0/labels.json"
    assert corpus.relative(corpus.features_of("ex-1")) == "features/ex-1.npy"


def test_the_inbox_accepts_rejects_reports_and_deletes(tmp_path):
    inbox = ContributionsInbox(tmp_path / "contributions")
    inbox.incoming.mkdir(parents=True)
    (inbox.incoming / "a.json").write_text("{}")
    (inbox.incoming / "b.txt").write_text("x")
    (inbox.incoming / ".DS_Store").write_text("")
    os.symlink(tmp_path / "secret", inbox.incoming / "link.json")  # dangling: it is never followed
    assert [p.name for p in inbox.waiting()] == ["a.json", "b.txt", "link.json"]

    inbox.accept("s1", {"features": []}, inbox.incoming / "a.json")
    assert inbox.accepted_submissions() == {"s1": {"features": []}}
    assert inbox.reject(inbox.incoming / "link.json").is_symlink()
    (inbox.rejected / "b.txt").write_text("an earlier one")
    assert inbox.reject(inbox.incoming / "b.txt").name == "b.2.txt"
    assert inbox.write_report("b.txt", {"accepted": False}).name == "b.txt.report.json"
    assert inbox.write_report("b.txt", {"accepted": False}).name == "b.txt.report.2.json"
    assert inbox.delete("s1") == inbox.deleted / "s1.json" and inbox.delete("s1") is None
    assert inbox.counts() == {"accepted": 0, "rejected": 3, "deleted": 1}
    assert json.loads((inbox.deleted / "s1.json").read_text()) == {"features": []}


def test_a_free_name_numbers_a_taken_one(tmp_path):
    (tmp_path / "x.json").write_text("")
    (tmp_path / "x.2.json").write_text("")
    assert free_name(tmp_path / "x.json") == tmp_path / "x.3.json"
    assert free_name(tmp_path / "new") == Path(tmp_path / "new")

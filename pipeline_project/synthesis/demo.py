"""The demo song set: four songs rendered from music21 chorales with generated drums and bass.

Each song is written as a tagged MP3 into the drop folder; its stems and score-derived labels (beats, key,
chords, notes) are kept as ground truth elsewhere, so the pipeline's own output can be scored against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline_project.audio.io import write_audio, write_mp3, write_text_atomic
from pipeline_project.synthesis.arrangement import from_corpus
from pipeline_project.synthesis.grooves import with_rhythm_section
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render

MIN_SONG_SECONDS = 30.0


@dataclass(frozen=True)
class DemoSong:
    slug: str
    corpus_name: str
    tempo_bpm: float
    groove: str
    tags: dict


DEMO_SONGS = (
    DemoSong("amber_lanterns", "bach/bwv7.7", 100, "rock",
             {"title": "Amber Lanterns", "artist": "The Ferrous Quartet", "album": "Orchard Demos", "year": "2021", "genre": "Rock"}),
    DemoSong("velvet_tidewater", "bach/bwv269", 104, "waltz",
             {"title": "Velvet Tidewater", "artist": "Mirela Okonkwo-Hart", "album": "Orchard Demos", "year": "2022", "genre": "Folk"}),
    DemoSong("glasshouse_parade", "bach/bwv347", 96, "funk",
             {"title": "Glasshouse Parade", "artist": "Quillon Brassworks", "album": "Night Ferry Sessions", "year": "2019", "genre": "Funk"}),
    DemoSong("northbound_cinders", "bach/bwv40.8", 120, "disco",
             {"title": "Northbound Cinders", "artist": "Saoirse Vantablue", "album": "Night Ferry Sessions", "year": "2023", "genre": "Pop"}),
)


def build_demo_song(song: DemoSong, incoming: Path, ground_truth: Path, seed: int = 7) -> Path:
    """Render one demo song; returns the MP3's path."""
    arrangement = from_corpus(song.corpus_name)
    seconds = arrangement.length_ql * 60.0 / song.tempo_bpm
    arrangement = arrangement.repeated(int(-(-MIN_SONG_SECONDS // seconds)))
    arrangement = with_rhythm_section(arrangement, song.groove, seed)
    performance = perform(arrangement, song.tempo_bpm, seed=seed, humanization=STEADY_TEMPO)
    audio = render(performance)

    truth_dir = ground_truth / song.slug
    for stem, samples in audio.stems.items():
        write_audio(truth_dir / "stems" / f"{stem}.flac", samples, audio.sample_rate)
    labels = performance.labels() | {"origin": arrangement.origin, "licence": arrangement.licence,
                                     "soundfonts": audio.soundfonts, "tags": song.tags}
    write_text_atomic(truth_dir / "labels.json", json.dumps(labels, indent=1))

    mp3_path = incoming / f"{song.slug}.mp3"
    write_mp3(mp3_path, audio.mix, audio.sample_rate, song.tags)
    return mp3_path


def write_demo_songs(incoming: Path, ground_truth: Path, log=print) -> list[Path]:
    incoming.mkdir(parents=True, exist_ok=True)
    paths = []
    for song in DEMO_SONGS:
        log(f"rendering demo song {song.slug} from {song.corpus_name}")
        paths.append(build_demo_song(song, incoming, ground_truth))
    return paths

"""The demo song set: fifteen short songs rendered from music21 chorales with generated drums and bass, and
one community contribution made from their drum stems.

The set is sized to show the whole product at its default settings: three genres of five songs each, every
song in a major key at 100-112 BPM and under 30 s, so `song_features` reaches k = 5 (each genre's songs share
their coarsened tempo, mode and length) and the genre classifier has two or more tagged genres to learn from.
Each song is written as a tagged MP3 into the drop folder; its stems and score-derived labels (beats, key,
chords, notes) are kept as ground truth elsewhere, so the pipeline's own output can be scored against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline_project.audio.io import read_audio, write_audio, write_mp3
from pipeline_project.files import write_text_atomic
from pipeline_project.layout import ExampleFolder
from pipeline_project.parallel import map_in_processes

# Long enough for sections and a dozen bars of beats; short enough that fifteen songs render and run in
# about two minutes on two cores.
MIN_SONG_SECONDS = 16.0
MAX_QUARTER_NOTES = 32
SEED = 7


@dataclass(frozen=True)
class DemoSong:
    slug: str
    corpus_name: str
    tempo_bpm: float
    groove: str
    tags: dict


def _song(
    slug: str, corpus_name: str, tempo: float, groove: str, title: str, artist: str, album: str, year: str, genre: str
) -> DemoSong:
    return DemoSong(
        slug,
        corpus_name,
        tempo,
        groove,
        {"title": title, "artist": artist, "album": album, "year": year, "genre": genre},
    )


# Invented titles, artists and albums; none of the chorales is reserved for evaluation or used elsewhere.
DEMO_SONGS = (
    _song(
        "amber_lanterns",
        "bach/bwv250",
        104,
        "rock",
        "Amber Lanterns",
        "The Ferrous Quartet",
        "Orchard Demos",
        "2021",
        "Rock",
    ),
    _song(
        "copperleaf_stairwell",
        "bach/bwv251",
        108,
        "rock",
        "Copperleaf Stairwell",
        "The Ferrous Quartet",
        "Orchard Demos",
        "2021",
        "Rock",
    ),
    _song(
        "harbour_of_kestrels",
        "bach/bwv253",
        110,
        "rock",
        "Harbour of Kestrels",
        "Wendeline Ashgrove",
        "Salt Road",
        "2019",
        "Rock",
    ),
    _song(
        "pewter_morning",
        "bach/bwv260",
        106,
        "rock",
        "Pewter Morning",
        "Wendeline Ashgrove",
        "Salt Road",
        "2019",
        "Rock",
    ),
    _song(
        "quarrymen_waltzing",
        "bach/bwv262",
        112,
        "rock",
        "Quarrymen Waltzing",
        "Brisco Lantern-Hale",
        "Salt Road",
        "2020",
        "Rock",
    ),
    _song(
        "glasshouse_parade",
        "bach/bwv252",
        102,
        "funk",
        "Glasshouse Parade",
        "Quillon Brassworks",
        "Night Ferry Sessions",
        "2019",
        "Funk",
    ),
    _song(
        "marigold_switchback",
        "bach/bwv255",
        104,
        "funk",
        "Marigold Switchback",
        "Quillon Brassworks",
        "Night Ferry Sessions",
        "2019",
        "Funk",
    ),
    _song(
        "tamarind_elevator",
        "bach/bwv263",
        106,
        "funk",
        "Tamarind Elevator",
        "Odalys Ferreira-Lund",
        "Velour Transit",
        "2022",
        "Funk",
    ),
    _song(
        "overpass_sonnet",
        "bach/bwv264",
        100,
        "funk",
        "Overpass Sonnet",
        "Odalys Ferreira-Lund",
        "Velour Transit",
        "2022",
        "Funk",
    ),
    _song(
        "brickwork_comet",
        "bach/bwv273",
        108,
        "funk",
        "Brickwork Comet",
        "Teodor Vanstraaten",
        "Velour Transit",
        "2023",
        "Funk",
    ),
    _song(
        "northbound_cinders",
        "bach/bwv287",
        110,
        "disco",
        "Northbound Cinders",
        "Saoirse Vantablue",
        "Mirrorball Ledger",
        "2023",
        "Disco",
    ),
    _song(
        "satellite_orchard",
        "bach/bwv290",
        112,
        "disco",
        "Satellite Orchard",
        "Saoirse Vantablue",
        "Mirrorball Ledger",
        "2023",
        "Disco",
    ),
    _song(
        "neon_cartographer",
        "bach/bwv291",
        108,
        "disco",
        "Neon Cartographer",
        "Ptolema Riverside",
        "Mirrorball Ledger",
        "2024",
        "Disco",
    ),
    _song(
        "velvet_tidewater",
        "bach/bwv292",
        104,
        "disco",
        "Velvet Tidewater",
        "Mirela Okonkwo-Hart",
        "Sequin Weather",
        "2022",
        "Disco",
    ),
    _song(
        "lighthouse_rollerdrome",
        "bach/bwv293",
        106,
        "disco",
        "Lighthouse Rollerdrome",
        "Mirela Okonkwo-Hart",
        "Sequin Weather",
        "2022",
        "Disco",
    ),
)
# The demo contribution: what another user of the tool would send (see datasets/contributions.py).
CONTRIBUTION_FILE = "demo_contributor_hihats.json"
CONTRIBUTION_GENRE = "rock"


def build_demo_song(song: DemoSong, incoming: Path, ground_truth: Path, seed: int = SEED) -> Path:
    """Render one demo song; returns the MP3's path."""
    from pipeline_project.synthesis.arrangement import from_corpus
    from pipeline_project.synthesis.grooves import with_rhythm_section
    from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
    from pipeline_project.synthesis.render import render

    arrangement = from_corpus(song.corpus_name, max_ql=MAX_QUARTER_NOTES)
    seconds = arrangement.length_ql * 60.0 / song.tempo_bpm
    arrangement = arrangement.repeated(int(-(-MIN_SONG_SECONDS // seconds)))
    arrangement = with_rhythm_section(arrangement, song.groove, seed)
    performance = perform(arrangement, song.tempo_bpm, seed=seed, humanization=STEADY_TEMPO)
    audio = render(performance)

    truth = ExampleFolder(ground_truth / song.slug)
    for stem, samples in audio.stems.items():
        write_audio(truth.stem(stem), samples, audio.sample_rate)
    labels = performance.labels() | {
        "origin": arrangement.origin,
        "licence": arrangement.licence,
        "soundfonts": audio.soundfonts,
        "tags": song.tags,
    }
    write_text_atomic(truth.labels, json.dumps(labels, indent=1))

    mp3_path = incoming / f"{song.slug}.mp3"
    write_mp3(mp3_path, audio.mix, audio.sample_rate, song.tags)
    return mp3_path


def _build(job: tuple[DemoSong, Path, Path]) -> Path:
    return build_demo_song(*job)


def write_demo_songs(incoming: Path, ground_truth: Path, log=print, workers: int = 0) -> list[Path]:
    """Render every demo song, in DEMO_SONGS order, in `workers` processes (0: one per core)."""
    incoming.mkdir(parents=True, exist_ok=True)
    log(f"rendering {len(DEMO_SONGS)} demo songs from Bach chorales")
    return list(map_in_processes(_build, [(song, incoming, ground_truth) for song in DEMO_SONGS], workers))


def write_demo_contribution(ground_truth: Path, inbox: Path, log=print) -> Path:
    """A community submission of hi-hat features, exported the way `pipeline-project contributions export`
    does, from the demo songs' own drum stems at their labelled hi-hat hits: what a second user of the tool
    would send. Written to the contributions inbox, where the review accepts or rejects it."""
    from pipeline_project.datasets.contributions import FEATURES, export_submission
    from pipeline_project.datasets.tables import private_drum_hits

    examples = []
    for song in DEMO_SONGS:
        truth = ExampleFolder(ground_truth / song.slug)
        labels = json.loads(truth.labels.read_text())
        drums, sample_rate = read_audio(truth.stem("drums"))
        examples.append(({**labels, "spec": {"example_key": song.slug}}, drums.mean(axis=0), sample_rate))
    hits = private_drum_hits(examples)
    # Rendered songs repeat themselves (the same sample at the same velocity gives the same features, to the
    # exchange format's 0.1 precision); the pool wants each distinct hit once.
    hits = hits.loc[~hits[list(FEATURES)].round(1).duplicated()]
    submission, _ = export_submission(hits, "hihat", CONTRIBUTION_GENRE)
    path = inbox / CONTRIBUTION_FILE
    write_text_atomic(path, json.dumps(submission))
    log(f"wrote a demo contribution of {len(submission['features'])} hi-hat hits to {path}")
    return path

"""After the first `make run` on the demo songs, at the default settings: every dataset has rows, each of the
three model families, and the learned beat tracker and chord recognizer, has a version with the `champion`
alias, the songs were analysed with those champions, the song index holds every song, and every asset check
passed."""

import os
import sys
from pathlib import Path

import dagster as dg

from pipeline_project.cli import checks_summary
from pipeline_project.datasets.snapshots import latest_manifest
from pipeline_project.definitions import build_definitions, default_resources
from pipeline_project.identification.catalog import SongIndex, SongIndexError
from pipeline_project.training.families import DRUM_MODEL_NAME, EMBEDDING_MODEL_NAME, GENRE_MODEL_NAME

DATASETS = ("song_features", "synthetic_examples", "drum_hits", "concert_pairs", "contributed_hits", "review_queue")

os.environ.setdefault("DAGSTER_HOME", str(Path(__file__).resolve().parent.parent / ".dagster"))
resources = default_resources()
storage, problems = resources["storage"], []
for name in DATASETS:
    manifest = latest_manifest(storage.dataset_dir(name))
    if not manifest or manifest["rows"] < 1:
        problems.append(f"dataset {name} has no rows")
# The labeling page's queues are built, and the (still empty) labels release passed its privacy audit.
if not storage.labels().genre_queue.exists():
    problems.append("the genre queue was not built")
if latest_manifest(storage.dataset_dir("human_labels")) is None:
    problems.append("human_labels has no published snapshot")
registry = resources["mlflow"].registry()
# The learned beat tracker and chord recognizer beat the DSP path on their validation renders: the shipped
# set registered on the first run makes them champions, and songs are analysed with them.
for model in (DRUM_MODEL_NAME, GENRE_MODEL_NAME, EMBEDDING_MODEL_NAME, "beat_tracker", "chord_recognizer"):
    if registry.champion_version(model) is None:
        problems.append(f"model {model} has no champion")
storage.fetch(storage.songs, pattern="*.json")
for key in storage.finished_song_keys():
    analysis = storage.read_json(storage.song(key).analysis)
    if analysis["analysers"]["rhythm"] != "learned" or analysis["analysers"]["chords"] != "learned":
        problems.append(f"song {key} was analysed by {analysis['analysers']}, not the learned champions")
# The song index holds every finished song, embedded by the embedding's champion.

try:
    index = SongIndex.load(storage.fetch(storage.song_index))
    if sorted(index.tracks) != sorted(storage.finished_song_keys()):
        problems.append(f"the song index holds {len(index.tracks)} songs, the lake {len(storage.finished_song_keys())}")
    champion = registry.champion_version(EMBEDDING_MODEL_NAME)
    if champion is not None and index.info.get("model_version") != champion.version:
        problems.append(
            f"the song index was built with {EMBEDDING_MODEL_NAME} version {index.info.get('model_version')}"
        )
except SongIndexError as error:
    problems.append(str(error))
checks = checks_summary(dg.DagsterInstance.get(), build_definitions(resources))
if checks[1:] or "not run" in checks[0]:
    problems.append(f"asset checks: {'; '.join(checks)}")
print(
    "\n".join(problems)
    or f"demo: every dataset has rows, five champions, songs analysed by the learned champions, asset checks {checks[0]}"
)
sys.exit(1 if problems else 0)

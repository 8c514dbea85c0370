"""The linkage attack on `song_features` at several k, beside the exact release an attacker would face without
microaggregation.

A collection of rendered songs (drums and bass in five styles, random keys and tempi, genre tags; a few songs a
second time as FLAC) goes through the per-song stages exactly as `python -m pipeline_project run --songs-only`
runs them. The attacker owns every song, computes each one's row with the project's own code (the pipeline is
deterministic: the lake's analysis is what they get) and matches it against the released rows on every released
column (`datasets.linkage.linkage_rate`: credit 1 / candidates when the song's own row is among the nearest).
It also reports what the release costs: the genre classifier's macro F1 on the released rows.

Target: linkage <= 1 / k at every k; the exact release (k = 1) is the attacker's best case.

    .venv/bin/python benchmarks/bench_linkage.py [--songs 60] [--k 3 5 10]   (about 3 min on 2 cores for 60 songs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=60)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5, 10])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["DAGSTER_HOME"] = str(root / "home")
        os.environ["XDG_CONFIG_HOME"] = str(root / "config")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        (root / "home").mkdir()
        (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        data_root = root / "data"
        render_collection(data_root / "incoming", args.songs)
        from pipeline_project import cli

        if cli.run(str(data_root), songs_only=True) != 0:
            sys.exit("the pipeline failed on the collection")
        report(data_root, args.k)


def render_collection(incoming: Path, count: int) -> None:
    from pipeline_project.audio.io import decode_song, write_mp3
    from pipeline_project.synthesis.grooves import groove_only
    from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
    from pipeline_project.synthesis.render import render

    styles = {"rock": "rock", "funk": "funk", "disco": "disco", "jazz": "jazz_ride", "ballad": "ballad_6_8"}
    rng = np.random.default_rng(11)
    incoming.mkdir(parents=True)
    for index in range(count):
        genre = list(styles)[index % len(styles)]
        key = f"{rng.choice(['C', 'D', 'E', 'F', 'G', 'A', 'B'])}:{rng.choice(['major', 'minor'])}"
        performance = perform(
            groove_only(styles[genre], 4, index, key=key),
            float(rng.integers(75, 155)),
            seed=index,
            humanization=STEADY_TEMPO,
        )
        audio = render(performance)
        write_mp3(
            incoming / f"song_{index:03d}.mp3", audio.mix, audio.sample_rate, {"genre": genre, "title": f"Song {index}"}
        )
    for index in range(min(3, count)):
        decode_song(incoming / f"song_{index:03d}.mp3", incoming / f"song_{index:03d}.flac")


def report(data_root: Path, ks: list[int]) -> None:
    from pipeline_project.datasets.anonymize import keyed_hash
    from pipeline_project.datasets.linkage import linkage_rate
    from pipeline_project.datasets.tables import SONG_FEATURE_CATEGORICAL, SONG_FEATURE_NUMERIC, song_features_table
    from pipeline_project.training import genre_classifier

    records = []
    for song in sorted((data_root / "lake" / "songs").iterdir()):
        if (song / "theory.json").exists():
            records.append(
                {
                    "key": song.name,
                    **{
                        n: json.loads((song / f"{n}.json").read_text()) for n in ("song", "stems", "analysis", "theory")
                    },
                }
            )
    secret, attacker = b"the collection's key", b"the attacker's own key"
    recomputed, _ = song_features_table(records, attacker, k=1)
    truth = {keyed_hash(attacker, f"song:{r['key']}"): keyed_hash(secret, f"song:{r['key']}") for r in records}
    print(f"{len(records)} songs; attacker owns every one and matches on every released column")
    print(f"{'release':<26}{'rows':>6}{'linkage':>10}{'bound 1/k':>11}{'genre macro F1':>16}")
    for k in [1, *ks]:
        released, rep = song_features_table(records, secret, k=k)
        rate = linkage_rate(
            released, recomputed, truth, "song_id", list(SONG_FEATURE_CATEGORICAL), list(SONG_FEATURE_NUMERIC)
        )
        name = "exact (k = 1)" if k == 1 else f"microaggregated, k = {k}"
        print(f"{name:<26}{len(released):>6}{rate:>10.3f}{1 / k:>11.3f}{_genre_f1(genre_classifier, released):>16}")


def _genre_f1(genre_classifier, table) -> str:
    """Macro F1 of the genre classifier trained on the released train split, on the released test rows."""
    train, test = table[table["split"] == "train"], genre_classifier.evaluation_rows(table)
    if genre_classifier.why_not_trainable(train, test):
        return "n/a"
    model = genre_classifier.train(train, seed=0)
    return f"{genre_classifier.evaluate(model, test).macro_f1:.3f}"


if __name__ == "__main__":
    main()

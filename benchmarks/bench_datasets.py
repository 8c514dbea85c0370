"""Writing a 1-million-row `drum_hits` snapshot, anonymization and checks included, beside a raw pyarrow
write of the same table.

The hits are real: features of isolated hits in grooves rendered with the bundled SoundFont, repeated with
a seeded jitter up to a million rows in groups of 300 (one group per example, as from 3,334 songs). The
project's path is what the `drum_hits` asset and its checks run: `anonymize_drum_hits` (keyed-hash ids,
onsets dropped, tempo coarsened, secret row order, splits by group), `write_snapshot` (zstd Parquet,
sha256 of every file, manifest, atomic rename, latest pointer), the privacy audit against a catalog of
1,000 invented songs, and the validation. The peer is `pyarrow.parquet.write_table` of the anonymized table
with pyarrow's defaults. Target: at least 0.5x the peer's speed.

    .venv/bin/python benchmarks/bench_datasets.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_project.analysis.drum_hits import FEATURE_NAMES
from pipeline_project.datasets.privacy import audit_table, catalog_terms
from pipeline_project.datasets.snapshots import write_snapshot
from pipeline_project.datasets.tables import anonymize_drum_hits, private_drum_hits
from pipeline_project.datasets.validation import validate_table
from pipeline_project.synthesis.grooves import groove_only
from pipeline_project.synthesis.performance import STEADY_TEMPO, perform
from pipeline_project.synthesis.render import render

SECRET = b"b" * 32
GROUP_SIZE = 300
TARGET = 0.5


def private_hits(rows: int) -> pd.DataFrame:
    examples = []
    for seed, style in enumerate(("rock", "funk", "disco", "half_time")):
        performance = perform(groove_only(style, 8, seed), 110.0, seed=seed, humanization=STEADY_TEMPO)
        audio = render(performance)
        labels = performance.labels() | {"spec": {"example_key": f"bench-{style}"}}
        examples.append((labels, audio.stems["drums"].mean(axis=0), audio.sample_rate))
    seed_rows = private_drum_hits(examples)
    index = np.arange(rows) % len(seed_rows)
    table = seed_rows.iloc[index].reset_index(drop=True)
    rng = np.random.default_rng(0)
    for name in FEATURE_NAMES:
        table[name] = table[name].to_numpy() * rng.uniform(0.9, 1.1, rows)
    table["example"] = [f"ex-{i // GROUP_SIZE:07d}" for i in range(rows)]
    table["onset"] = (np.arange(rows) % GROUP_SIZE) * 0.25
    return table


def catalog() -> set[str]:
    rng = np.random.default_rng(1)
    words = ["amber", "copper", "velvet", "harbor", "lantern", "orchid", "quartz", "meadow", "ember", "willow"]
    return catalog_terms(
        [
            {
                "title": f"{rng.choice(words)} {rng.choice(words)} {i}",
                "artist": f"The {rng.choice(words).title()}s {i}",
                "album": f"{rng.choice(words)} sessions {i}",
                "file_names": [f"track_{i:04d}.mp3"],
            }
            for i in range(1000)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    private, terms = private_hits(args.rows), catalog()
    ours, raw, last = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            table = anonymize_drum_hits(private, SECRET)
            written = write_snapshot(table, Path(tmp) / "drum_hits", "drum_hits")
            findings = audit_table(table, terms)
            validation = validate_table("drum_hits", table)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            pq.write_table(pa.Table.from_pandas(table, preserve_index=False), Path(tmp) / f"raw-{repeat}.parquet")
            raw.append(time.perf_counter() - started)
            last = (written, findings, validation)
    written, findings, validation = last
    best_ours, best_raw = min(ours), min(raw)
    print(
        f"{args.rows:,} drum hits, {len(FEATURE_NAMES)} features, {len(terms):,} catalog terms, best of {args.repeats}"
    )
    print(f"{'path':<52}{'seconds':>9}{'rows/s':>14}")
    print(
        f"{'project: anonymize + snapshot + privacy + validation':<52}{best_ours:>9.2f}{args.rows / best_ours:>14,.0f}"
    )
    print(f"{'pyarrow write_table of the same table':<52}{best_raw:>9.2f}{args.rows / best_raw:>14,.0f}")
    print(
        f"snapshot {written.snapshot_id}: {written.rows:,} rows; privacy findings {len(findings)}; "
        f"validation problems: {'; '.join(validation['problems']) or 'none'}"
    )
    ratio = best_raw / best_ours
    print(f"speed ratio project / pyarrow: {ratio:.2f}x (target >= {TARGET}x): {'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()

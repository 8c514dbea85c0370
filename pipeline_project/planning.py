"""Which song runs to start: the rules the new-songs sensor, the failed-batch sensor and `run` share.

A plan names the songs a run covers, the stages it materializes (all of them, or those a song lacks), the
files behind the songs, and the run key that makes it unique: a new song's key (or `first..last` for a batch),
and `<failed run id>:<key>` for a song split off a failed batch. The Dagster layer turns a plan into a
`RunRequest` (the sensors) or into the tags of an in-process run (`run`); both carry the same run key under
the same sensor's name, so the daemon never starts a run that `run` already started (see
`assets.partitions.plan_tags`), and `run` never starts one for a song a daemon run is working on
(`in_flight`). No Dagster import: the callers ask the instance and hand the answers in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The per-song stages, in pipeline order: `song_pipeline_job` is made of exactly these.
PER_SONG_STAGES = ("song_audio", "song_quality", "song_stems", "song_analysis", "song_theory")
# The sensors whose requests the plans stand for (their run keys are unique per sensor).
NEW_SONGS = "new_songs_sensor"
SPLIT_BATCHES = "split_failed_batches"


@dataclass(frozen=True)
class SongRun:
    keys: tuple[str, ...]  # song partitions, contiguous in the partitions' order
    run_key: str
    sensor: str  # NEW_SONGS or SPLIT_BATCHES: whose run keys this one shares
    files: Mapping[str, str] = field(default_factory=dict)  # partition key -> file relative to the drop folder
    stages: tuple[str, ...] | None = None  # None: every per-song stage

    @property
    def is_batch(self) -> bool:
        return len(self.keys) > 1


def songs_per_run(new_songs: int, batch_size: int) -> int:
    """Songs per run for a drop of `new_songs`: one each for a few (the best isolation, and runs in
    parallel), batches of `batch_size` for a backfill (Dagster's fixed cost per run stays small)."""
    return batch_size if new_songs > batch_size else 1


def batch_run_key(keys: Iterable[str]) -> str:
    keys = list(keys)
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def keys_in_range(order: list[str], first: str, last: str) -> list[str] | None:
    """The partitions from `first` to `last` in `order`, or None when either is no longer a partition."""
    if first not in order or last not in order:
        return None
    return order[order.index(first) : order.index(last) + 1]


def stages_lacking(
    keys: Iterable[str], done: Mapping[str, set[str]], stages: tuple[str, ...] = PER_SONG_STAGES
) -> dict[str, tuple[str, ...]]:
    """For each song, the `stages` (in order) whose materialized partitions (`done[stage]`) lack it."""
    return {key: tuple(stage for stage in stages if key not in done.get(stage, set())) for key in keys}


def song_batches(order: list[str], fresh: set[str], pending: set[str], size: int) -> list[list[str]]:
    """The pending songs in runs: songs with no stage done yet that sit next to each other in the partitions'
    `order` share a run, up to `size` of them (a run covers a contiguous range of partitions); any other
    pending song, one begun earlier, gets a run of its own that resumes it."""
    batches: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in fresh and len(current) < size:
            current.append(key)
            continue
        if current:
            batches.append(current)
        current = [key] if key in fresh else []
        if key in pending and key not in fresh:
            batches.append([key])
    return batches + ([current] if current else [])


def plan_new_songs(found: Mapping[str, str], known: Iterable[str], batch_size: int) -> tuple[list[str], list[SongRun]]:
    """For the songs in the drop folder (`found`: partition key -> file), the keys that are not partitions yet
    (to add, in this order, after every known one) and their runs: one per song for a few, contiguous batches
    for a backfill."""
    new_keys = sorted(set(found) - set(known))
    size = songs_per_run(len(new_keys), batch_size)
    runs = [
        SongRun(tuple(batch), batch_run_key(batch), NEW_SONGS, {key: found[key] for key in batch})
        for batch in (new_keys[i : i + size] for i in range(0, len(new_keys), size))
    ]
    return new_keys, runs


def plan_pending(
    order: list[str],
    found: Mapping[str, str],
    lacking: Mapping[str, tuple[str, ...]],
    batch_size: int,
    in_flight: Mapping[str, str] | None = None,
) -> tuple[list[SongRun], dict[str, str]]:
    """`run`'s runs for the songs in the drop folder that lack a stage: new songs in batches (as the sensor
    would), songs begun earlier one to a run for what they lack. Songs a run elsewhere is working on
    (`in_flight`: key -> run id) are left to it; returns (runs, {key: run id} of those left)."""
    in_flight = in_flight or {}
    left = {key: in_flight[key] for key in found if lacking[key] and key in in_flight}
    pending = {key for key in found if lacking[key] and key not in left}
    fresh = {key for key in pending if len(lacking[key]) == len(PER_SONG_STAGES)}
    runs = []
    for batch in song_batches(order, fresh, pending, songs_per_run(len(fresh), batch_size)):
        stages = None if all(key in fresh for key in batch) else lacking[batch[0]]
        runs.append(SongRun(tuple(batch), batch_run_key(batch), NEW_SONGS, {key: found[key] for key in batch}, stages))
    return runs, left


def plan_split(
    failed_run_id: str, keys: list[str], lacking: Mapping[str, tuple[str, ...]], files: Mapping[str, str]
) -> list[SongRun]:
    """After a batch run failed: one run per song of the batch for the stages it still lacks, so a bad song
    fails on its own partition, with its own file and reason, and the others finish."""
    return [
        SongRun(
            (key,), f"{failed_run_id}:{key}", SPLIT_BATCHES, {key: files[key]} if key in files else {}, lacking[key]
        )
        for key in keys
        if lacking[key]
    ]

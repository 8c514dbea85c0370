"""Iterate over a training export with PyTorch: each song's mix and stems as float32 tensors (channels, samples),
its labels and tags. Usage: python examples/load_training_export.py data/exports/<export id> [train|validation|test]"""

import io
import json
import sys
from pathlib import Path

import soundfile as sf
import torch
import webdataset as wds

AUDIO = ("mix", "drums", "bass", "other", "vocals")


def decode(sample: dict) -> dict:
    song = {
        "key": sample["__key__"],
        "labels": json.loads(sample["labels.json"]),
        "tags": json.loads(sample["tags.json"]),
    }
    for name in AUDIO:
        samples, rate = sf.read(io.BytesIO(sample[f"{name}.flac"]), dtype="float32", always_2d=True)
        song[name], song["sample_rate"] = torch.from_numpy(samples.T.copy()), rate
    return song


def songs(export: Path, split: str = "train", workers: int = 2) -> torch.utils.data.DataLoader | list:
    manifest = json.loads((export / "manifest.json").read_text())
    shards = [str(export / shard["file"]) for shard in manifest["splits"][split]["shards"]]
    if not shards:
        return []  # no artist of a small collection fell in this split
    # For training: shardshuffle=True and .shuffle(1000) before .map; workers read different shards.
    dataset = wds.WebDataset(shards, shardshuffle=False, empty_check=False).map(decode)
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)


if __name__ == "__main__":
    for song in songs(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "train"):
        print(
            song["key"],
            song["tags"].get("artist"),
            tuple(song["mix"].shape),
            len(song["labels"]["beat_times"]),
            "beats",
        )

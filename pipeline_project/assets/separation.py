import json
import time

import dagster as dg

from pipeline_project.assets.ingestion import song_audio
from pipeline_project.assets.partitions import songs_partitions
from pipeline_project.audio.io import read_audio, write_audio, write_text_atomic
from pipeline_project.resources import SeparatorResource, StorageResource


@dg.asset(partitions_def=songs_partitions, group_name="separation", kinds={"pytorch", "audio"}, code_version="1",
          deps=[song_audio], pool="separation")
def song_stems(context: dg.AssetExecutionContext, storage: StorageResource, separator: SeparatorResource) -> dg.MaterializeResult:
    """Drums, bass, other and vocals stems (FLAC) of the song, by Demucs when weights are available, else by
    the DSP fallback. The metadata says which separator and which weights (sha256) made them."""
    song_dir = storage.song_dir(context.partition_key)
    mix, sample_rate = read_audio(song_dir / "audio.flac")
    started = time.perf_counter()
    separation = separator.separate(mix, sample_rate, logger=context.log)
    seconds = time.perf_counter() - started
    for name, samples in separation.stems.items():
        write_audio(song_dir / "stems" / f"{name}.flac", samples, sample_rate)
    description = separation.describe()
    write_text_atomic(song_dir / "stems.json", json.dumps(description, indent=1))
    duration = mix.shape[1] / sample_rate
    context.log.info(f"separated {duration:.1f} s in {seconds:.1f} s with {separation.separator}")
    return dg.MaterializeResult(metadata={
        **{k: v for k, v in description.items() if v is not None and not isinstance(v, (dict, list))},
        "stems": ", ".join(separation.stems),
        "seconds": round(seconds, 2),
        "real_time_factor": round(seconds / duration, 3),
    })

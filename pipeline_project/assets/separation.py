import json
import time

import dagster as dg
import soundfile as sf

from pipeline_project.assets.ingestion import song_audio
from pipeline_project.assets.partitions import for_each_song, songs_partitions
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.files import write_text_atomic
from pipeline_project.resources import MlflowResource, SeparatorResource, StorageResource
from pipeline_project.separation.separator import STEM_NAMES

# On Kubernetes (PIPELINE_EXECUTOR=k8s) each separation gets a pod with one GPU; other executors ignore this.
SEPARATION_POD_RESOURCES = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
                "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
            }
        }
    }
}


@dg.asset(
    partitions_def=songs_partitions,
    group_name="separation",
    kinds={"pytorch", "audio"},
    code_version="3",
    deps=[song_audio],
    pool="separation",
    op_tags=SEPARATION_POD_RESOURCES,
)
@retry_transient_failures
def song_stems(
    context: dg.AssetExecutionContext, storage: StorageResource, separator: SeparatorResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Drums, bass, other and vocals stems (FLAC) of the song: by Demucs when weights are available, else by the
    learned separator (the `stem_separator` champion in MLflow), else by the DSP fallback; in windows of about two
    minutes so memory stays flat for long songs. The metadata and stems.json say which separator, which weights
    (sha256) and which model version made them."""
    learned = mlflow.stem_separator(log=context.log.info) if separator.wants_learned(context.log) else None
    return for_each_song(context, lambda key: separate_one_song(context, storage, separator, key, learned))


def separate_one_song(
    context: dg.AssetExecutionContext, storage: StorageResource, separator: SeparatorResource, key: str, learned=None
) -> dict:
    song = storage.song(key)
    storage.fetch(song.path)
    duration = sf.info(str(song.audio)).duration
    started = time.perf_counter()
    separation = separator.separate_file(song.audio, song.stems_dir, logger=context.log, learned=learned)
    seconds = time.perf_counter() - started
    description = separation.describe()
    write_text_atomic(song.stems_record, json.dumps(description, indent=1))
    storage.publish(song.path)
    context.log.info(f"separated {duration:.1f} s in {seconds:.1f} s with {separation.separator}")
    return {
        **{k: v for k, v in description.items() if v is not None and not isinstance(v, (dict, list))},
        "stems": ", ".join(STEM_NAMES),
        "seconds": round(seconds, 2),
        "real_time_factor": round(seconds / duration, 3),
    }

"""The song index: the champion embedding's windows of every song, searched by `identify` (the CLI) to name a
song from a few seconds of it heard anywhere, a concert included."""

import dagster as dg

from pipeline_project.assets.ingestion import song_audio
from pipeline_project.assets.retrying import retry_transient_failures
from pipeline_project.assets.training import song_embedding
from pipeline_project.automation import once_deps_updated
from pipeline_project.identification import catalog, collection, streaming
from pipeline_project.layout import SONG_DONE
from pipeline_project.resources import MlflowResource, StorageResource
from pipeline_project.training.families import EMBEDDING_MODEL_NAME


@dg.asset(
    group_name="identification",
    kinds={"faiss"},
    code_version="1",
    deps=[song_embedding, song_audio],
    automation_condition=once_deps_updated().with_label("a new champion embedding, or new songs"),
)
@retry_transient_failures
def song_index(
    context: dg.AssetExecutionContext, storage: StorageResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Every finished song's one-second windows, one a second, embedded by the `song_embedding` champion and
    indexed for nearest-neighbour search (exact up to 50,000 windows, 14 hours of music; FAISS IVF over 8-bit
    vectors beyond); rebuilt when the champion changes or songs arrive, embedding only songs new to the
    champion. The metadata gives its size, memory, recall and latency measured on the index itself, the largest
    lead over the runner-up that seeded noise gives a song in it (`noise_score`) and the lead an answer needs
    there (`answer_lead_needs`: noise_margin times noise_score)."""
    version, embedder = mlflow.registry().load_champion(EMBEDDING_MODEL_NAME)
    if version is None:
        return dg.MaterializeResult(metadata={"skipped": "no song_embedding champion yet: materialize song_embedding"})
    storage.fetch(storage.songs, pattern=SONG_DONE)
    keys = storage.finished_song_keys()
    for key in keys:
        storage.fetch(storage.song(key).path, pattern="*.npz")
        if not storage.song(key).window_embeddings.exists():
            storage.fetch(storage.song(key).audio)
    indexed = collection.index_collection(
        {key: storage.song(key) for key in keys},
        embedder,
        version=f"{EMBEDDING_MODEL_NAME}/{version.version}",
        info={"model_name": EMBEDDING_MODEL_NAME, "model_version": version.version, "run_id": version.run_id},
        log=context.log.info,
    )
    indexed.index.save(storage.song_index)
    storage.publish(storage.songs, storage.song_index)
    quality = collection.measure(indexed.index, indexed.vectors)
    return dg.MaterializeResult(
        metadata={
            "songs": len(indexed.index.tracks),
            "windows": indexed.index.size,
            "kind": indexed.index.kind,
            "embedding_version": f"{EMBEDDING_MODEL_NAME} version {version.version}",
            "songs_embedded_now": indexed.embedded,
            "songs_without_audio": len(indexed.skipped),
            **{name: value for name, value in quality.items() if value is not None},
            "noise_score": indexed.index.info["noise_score"],
            "answer_lead_needs": round(streaming.AnswerPolicy(indexed.index).min_lead_score, 4),
            "path": dg.MetadataValue.path(storage.location(storage.song_index)),
            "window_seconds_apart": round(catalog.CATALOG_HOP_FRAMES * catalog.FRAME_SECONDS, 3),
        }
    )

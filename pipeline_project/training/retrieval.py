"""Song identification with the embedding: a catalog of clean tracks indexed by overlapping one-second
windows, queries matched to their nearest window, scored by top-1, top-5 and mean reciprocal rank; and the
model exported to ONNX, float and int8, behind the same `embed` call as the torch model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline_project.training.embedding import WINDOW_FRAMES, embed

CATALOG_HOP_FRAMES = 4  # about 0.09 s: a query never starts more than half a hop from a catalog window


def sliding_windows(logmel: np.ndarray, hop: int = CATALOG_HOP_FRAMES) -> np.ndarray:
    """(windows, n_mels, WINDOW_FRAMES) views of an (n_mels, frames) log-mel, every `hop` frames."""
    if logmel.shape[1] < WINDOW_FRAMES:
        return np.zeros((0, logmel.shape[0], WINDOW_FRAMES), np.float32)
    view = np.lib.stride_tricks.sliding_window_view(logmel, WINDOW_FRAMES, axis=1)[:, ::hop]
    return np.ascontiguousarray(view.transpose(1, 0, 2), dtype=np.float32)


@dataclass
class CatalogIndex:
    embeddings: np.ndarray  # (windows, dim)
    track_of_window: np.ndarray  # (windows,) index into tracks
    tracks: list[str]


def build_index(model, catalog: dict[str, np.ndarray], hop: int = CATALOG_HOP_FRAMES) -> CatalogIndex:
    """Embed every window of every clean track's log-mel."""
    embeddings, owners, tracks = [], [], list(catalog)
    for index, track in enumerate(tracks):
        windows = sliding_windows(catalog[track], hop)
        embeddings.append(embed(model, windows))
        owners.append(np.full(len(windows), index))
    return CatalogIndex(np.concatenate(embeddings), np.concatenate(owners), tracks)


def rank_of_truth(index: CatalogIndex, queries: np.ndarray, truth: list[str]) -> np.ndarray:
    """1-based rank of the right track for each query, tracks ordered by their best window's similarity."""
    similarity = embed_similarity(index.embeddings, queries)
    best = np.full((len(queries), len(index.tracks)), -np.inf, dtype=np.float32)
    for track in range(len(index.tracks)):
        mask = index.track_of_window == track
        if mask.any():
            best[:, track] = similarity[:, mask].max(axis=1)
    wanted = np.array([index.tracks.index(t) for t in truth])
    own = best[np.arange(len(queries)), wanted]
    return 1 + (best > own[:, None]).sum(axis=1)


def embed_similarity(catalog: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return queries @ catalog.T


def retrieval_scores(ranks) -> dict[str, float]:
    """top-1, top-5 and mean reciprocal rank; a rank of 0 means the system gave no answer."""
    ranks = np.asarray(ranks, dtype=float)
    reciprocal = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)
    answered = ranks > 0
    return {
        "top1": round(float(np.mean(answered & (ranks == 1))), 4) if len(ranks) else 0.0,
        "top5": round(float(np.mean(answered & (ranks <= 5))), 4) if len(ranks) else 0.0,
        "mrr": round(float(reciprocal.mean()), 4) if len(ranks) else 0.0,
    }


def export_onnx(model, path: str | Path, n_mels: int) -> Path:
    """The torch model as ONNX (opset of the torch exporter), batch size dynamic."""
    import torch

    path = Path(path)
    example = torch.zeros(2, n_mels, WINDOW_FRAMES)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["logmel"],
        output_names=["embedding"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))
    strip_source_locations(path)
    return path


def strip_source_locations(path: str | Path) -> None:
    """Remove what the dynamo exporter records about where each node came from (stack traces with absolute
    paths of this machine's source and packages, the user's home among them): a model meant to be shared
    carries no machine's paths. The computation is unchanged."""
    import onnx

    model = onnx.load(str(path))

    def clean(nodes) -> None:
        for node in nodes:
            del node.metadata_props[:]
            node.doc_string = ""
            for attribute in node.attribute:
                for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    clean(subgraph.node)

    clean(model.graph.node)
    for function in model.functions:
        clean(function.node)
    onnx.save(model, str(path))


def quantize_int8(float_path: str | Path, int8_path: str | Path, calibration: np.ndarray) -> Path:
    """Static int8 quantization (QDQ, per-channel weights) of the convolutions and dense layers, calibrated on
    `calibration` windows.

    The network's input normalization (its two views) and its first convolution stay float. That
    convolution has 576 weights and a twentieth of the compute, and quantizing it cost the most: with it
    in int8, the worst cosine between int8 and float embeddings of 0 dB queries was 0.9948 (0.9963 with the
    normalization float) and the benchmark lost 2.3 points of top-1 at 0 dB; with it float, 0.9981."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                [{"logmel": calibration[i : i + 32].astype(np.float32)} for i in range(0, len(calibration), 32)]
            )

        def get_next(self):
            return next(self.batches, None)

    prepared = Path(int8_path).with_suffix(".prep.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    first_convolution = next(node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv")
    try:
        quantize_static(
            str(prepared),
            str(int8_path),
            Windows(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            nodes_to_exclude=[first_convolution],
        )
    finally:
        prepared.unlink(missing_ok=True)
    return Path(int8_path)


class OnnxEmbedder:
    """An exported embedding model run by onnxruntime, with the torch model's `embed` interface."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def embed(self, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = [
            self.session.run(None, {self.input: np.ascontiguousarray(windows[i : i + batch_size], dtype=np.float32)})[0]
            for i in range(0, len(windows), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def windows_from_table(table) -> tuple[np.ndarray, np.ndarray]:
    """Clean and degraded (rows, n_mels, frames) float32 windows from `concert_pairs` rows."""
    if table.empty:
        return np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0), np.float32)
    n_mels, frames = int(table["n_mels"].iloc[0]), int(table["frames"].iloc[0])

    def unpack(column: str) -> np.ndarray:
        packed = b"".join(table[column].tolist())
        return np.frombuffer(packed, dtype=np.float16).reshape(len(table), n_mels, frames).astype(np.float32)

    return unpack("clean_logmel"), unpack("degraded_logmel")


def pair_retrieval(model, table, seed: int = 0) -> dict:
    """Song identification within `concert_pairs` rows: the catalog is every clean window grouped by track, each
    query one second of a degraded window at a seeded offset. Overall and per-SNR top-1, top-5 and MRR."""
    clean, degraded = windows_from_table(table)
    tracks = sorted(set(table["track_id"]))
    catalog = {
        track: np.concatenate([clean[i] for i in np.flatnonzero(table["track_id"].to_numpy() == track)], axis=1)
        for track in tracks
    }
    # Windows are concatenated per track, so a catalog window may straddle two of them: harmless, it only adds
    # candidates, never hides the right one.
    index = build_index(model, catalog)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, degraded.shape[2] - WINDOW_FRAMES + 1, len(table))
    queries = np.stack([degraded[i, :, s : s + WINDOW_FRAMES] for i, s in enumerate(starts)])
    ranks = rank_of_truth(index, embed(model, queries), table["track_id"].tolist())
    snrs = table["snr_db"].to_numpy()
    return {
        "tracks": len(tracks),
        "queries": len(table),
        **retrieval_scores(ranks),
        "per_snr": {f"{snr:+.0f} dB": retrieval_scores(ranks[snrs == snr]) for snr in sorted(set(snrs))},
    }

"""Train the learned separator from the project's own rendered multitracks and write it with its card:
`make train-separator`.

    python -m pipeline_project.training.train_separator [--out pipeline_project/models] [--seed 0]
        [--steps 1000] [--width 256] [--max-pieces N] [--corpus data/separator_corpus] [--device auto]

1. Plans and renders the corpus (`training.separator_corpus`; the analysers' plans: training pieces through
   the training SoundFonts, validation pieces through the held-out ones, each in one listening condition).
   Renders are cached by plan, so a second run only trains.
2. Trains `separation.learned.network` for a fixed number of steps from the seed on random three-second
   excerpts (random gain, random left/right swap, a random equalizer on the mix and its stems alike), minimising
   the signal-to-distortion loss on the mid signal of the stems and of the noise share (the mix less the stems),
   and keeps the weights of the best validation loss.
3. Exports ONNX and scores it as the pipeline runs it (`separation.learned.separate_with_learned`) beside the DSP
   fallback on the validation renders: SDR per stem in every condition. The card says whether it is promoted:
   better than the fallback on the mean and no worse on any stem in any condition.
The test split is left to `benchmarks/bench_separation_quality.py`; reserved pieces are never planned.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline_project.files import atomic_path, sha256_of, write_text_atomic
from pipeline_project.layout import meter_cache
from pipeline_project.separation import learned
from pipeline_project.separation.separator import STEM_NAMES, pick_device, separate_with_fallback
from pipeline_project.training import analysis_corpus, separator_corpus
from pipeline_project.training.reproduce import source_of_training
from pipeline_project.training.train_analysis import DEFAULT_CORPUS as ANALYSIS_CORPUS

DEFAULT_CORPUS = Path("data/separator_corpus")
ANALYSIS_METERS = meter_cache(ANALYSIS_CORPUS)  # the time signatures the analysis renders read once
SHIPPED_MODELS = learned.SHIPPED_SEPARATOR.parent
EXCERPT_FRAMES = 128  # three seconds of STFT frames


@dataclass(frozen=True)
class SeparatorSettings:
    seed: int = 0
    steps: int = 1000  # a fixed count, not a time budget, so the same seed gives the same weights anywhere
    batch: int = 12
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    width: int = 256  # context features; a GPU can take 512


def sdr_loss(masks, targets):
    """Mean over stems (and the noise share) and excerpts of 10 log10(error / reference energy) of the masked mid
    spectra: the SDR's negative, computed on the STFT. A stem silent in the excerpt is measured against a small share of the mix's
    energy, so leaking into it still costs. `targets` from `batch_of`; the error of mask M on mix X for stem S,
    |M X - S|^2 = M^2 |X|^2 - 2 M Re(conj(X) S) + |S|^2, is computed in real arithmetic (cheaper than complex)."""
    import torch

    power, cross, stem_power = targets
    error = (masks.pow(2) * power[:, None] - 2 * masks * cross).sum((2, 3)) + stem_power
    floor = 1e-3 * power.sum((1, 2))[:, None] + 1e-8
    return (10 * torch.log10((error.clamp_min(0) + floor) / (stem_power + floor))).mean()


def _stft(audio):
    import torch

    window = torch.hann_window(learned.N_FFT)
    flat = audio.reshape(-1, audio.shape[-1])
    spectra = torch.stft(
        flat, learned.N_FFT, learned.HOP, window=window, center=True, pad_mode="constant", return_complex=True
    )
    return spectra.reshape(*audio.shape[:-1], *spectra.shape[-2:])


def batch_of(examples: list[dict], size: int, rng: np.random.Generator, frames: int = EXCERPT_FRAMES):
    """(features, targets for `sdr_loss`) of `size` random excerpts. Excerpts start on a frame of the render's own
    STFT, so its cached harmonic share lines up with theirs."""
    import torch

    samples = (frames - 1) * learned.HOP
    mixes, stems, harmonics = [], [], []
    for _ in range(size):
        example = examples[int(rng.integers(len(examples)))]
        length = example["mix"].shape[1]
        first = int(rng.integers(0, max(1, (length - samples) // learned.HOP)))
        start = first * learned.HOP
        gain = np.float32(10 ** (rng.uniform(-6, 6) / 20))
        mix = example["mix"][:, start : start + samples].astype(np.float32) * gain
        if rng.uniform() < 0.5:
            mix = mix[::-1]
        stem = example["stems"][:, start : start + samples].astype(np.float32) * gain
        pad = samples - mix.shape[1]
        mixes.append(np.pad(mix, ((0, 0), (0, pad))))
        stems.append(np.pad(stem, ((0, 0), (0, pad))))
        harmonic = example["harmonic"][:, first : first + frames].astype(np.float32)
        harmonics.append(np.pad(harmonic, ((0, 0), (0, frames - harmonic.shape[1])), constant_values=0.5))
    equalizer = torch.from_numpy(random_equalizers(size, rng))[:, None, :, None]  # same EQ on the mix and its stems
    spectra = _stft(torch.from_numpy(np.stack(mixes))) * equalizer
    mid, side = 0.5 * (spectra[:, 0] + spectra[:, 1]), 0.5 * (spectra[:, 0] - spectra[:, 1])
    inputs = np.stack(
        [learned.features_of(m, s, h) for m, s, h in zip(mid.abs().numpy(), side.abs().numpy(), harmonics)]
    )
    stem_spectra = _stft(torch.from_numpy(np.stack(stems))) * equalizer
    # The fifth target is what no stem holds (the condition's noise): the mix less the stems, empty when clean.
    stem_spectra = torch.cat([stem_spectra, mid[:, None] - stem_spectra.sum(1, keepdim=True)], 1)
    targets = (mid.abs().pow(2), (mid.conj()[:, None] * stem_spectra).real, stem_spectra.abs().pow(2).sum((2, 3)))
    return torch.from_numpy(inputs), targets


def random_equalizers(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, BINS) float32 gains: a tilt of up to 3 dB an octave around 1 kHz and a bell of up to 6 dB an octave
    wide somewhere from 100 Hz to 8 kHz, so the network cannot learn the training SoundFonts' timbres by heart."""
    octaves = np.log2(np.maximum(np.arange(learned.BINS) * learned.SAMPLE_RATE / learned.N_FFT, 20.0) / 1000.0)
    tilt = rng.uniform(-3, 3, (size, 1)) * octaves
    centre = rng.uniform(np.log2(0.1), np.log2(8.0), (size, 1))
    bell = rng.uniform(-6, 6, (size, 1)) * np.exp(-0.5 * ((octaves - centre) / 0.5) ** 2)
    return (10 ** (np.clip(tilt + bell, -12, 12) / 20)).astype(np.float32)


def _on(device: str, batch):
    inputs, targets = batch
    return inputs.to(device), tuple(t.to(device) for t in targets)


def train(corpus: list[dict], validation: list[dict], settings: SeparatorSettings, device: str = "auto", log=print):
    """Train for settings.steps on `device` ("auto": CUDA when present); the weights of the best validation loss
    are kept. (network on the CPU, in eval mode; record of the run). The same seed gives the same weights on the
    same kind of device; a GPU's differ in the last bits."""
    import torch
    from torch import nn

    device = pick_device(device)
    log(f"training the separator on {device}")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    network = learned.network(settings.width).to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate / settings.warmup_steps, weight_decay=1e-4
    )
    validation_rng = np.random.default_rng(settings.seed + 1)
    held_out = [_on(device, batch_of(validation, settings.batch, validation_rng)) for _ in range(6)]
    started, steps, best, best_state, history = time.monotonic(), 0, float("inf"), None, []
    while steps < settings.steps:
        network.train()
        for _ in range(min(50, settings.steps - steps)):
            inputs, targets = _on(device, batch_of(corpus, settings.batch, rng))
            loss = sdr_loss(network(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            steps += 1
            for group in optimizer.param_groups:  # linear warm-up, then cosine decay over the run
                group["lr"] = (
                    settings.learning_rate
                    * min(1.0, (steps + 1) / settings.warmup_steps)
                    * 0.5
                    * (1 + np.cos(np.pi * min(1.0, steps / settings.steps)))
                )
        network.eval()
        with torch.no_grad():
            value = float(np.mean([sdr_loss(network(inputs), targets).item() for inputs, targets in held_out]))
        history.append([steps, round(float(loss.item()), 3), round(value, 3)])
        if value < best:
            best, best_state = value, {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        log(
            f"  separator: step {steps}, train loss {loss.item():.3f} dB, validation loss {value:.3f} dB, "
            f"{time.monotonic() - started:.0f} s"
        )
    network = network.cpu()
    network.load_state_dict(best_state)
    network.eval()
    return network, {
        "steps": steps,
        "best_validation_loss_db": round(best, 3),
        "history": history,
        "settings": asdict(settings),
        "device": device,
        "seconds": round(time.monotonic() - started),
    }


def export_onnx(network, path: Path) -> None:
    """ONNX with a dynamic frame axis, written atomically."""
    import torch

    example = torch.zeros(1, learned.INPUTS, learned.BINS, 64)
    with atomic_path(path) as temporary:
        torch.onnx.export(
            learned.stems_only(network),
            (example,),
            str(temporary),
            input_names=["features"],
            output_names=["masks"],
            dynamic_axes={"features": {3: "frames"}, "masks": {3: "frames"}},
            opset_version=17,
            dynamo=False,
        )


def stem_sdr(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """SDR in dB of one mono stem; None where the reference is silent."""
    energy = float(np.sum(reference.astype(np.float64) ** 2))
    if energy < 1e-8:
        return None
    error = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return 10 * np.log10(energy / max(error, 1e-12))


def score(examples: list[dict], separate) -> list[dict]:
    """SDR per stem (on the mid signal) of `separate(mix, rate) -> stems` on every example."""
    rows = []
    for example in examples:
        mix = example["mix"].astype(np.float32)
        stems = separate(mix, example["meta"]["sample_rate"])
        rows.append(
            {
                name: stem_sdr(example["stems"][i].astype(np.float32), stems[name].mean(axis=0))
                for i, name in enumerate(STEM_NAMES)
            }
        )
    return rows


def by_condition(rows: list[dict], conditions: list[str]) -> dict[str, dict[str, float]]:
    """Mean SDR per stem in each condition, plus their mean over the stems (a stem no render of the condition has,
    such as drums among chorales, is left out)."""
    table = {}
    for condition in analysis_corpus.CONDITIONS:
        chosen = [r for r, c in zip(rows, conditions) if c == condition]
        values = {name: [r[name] for r in chosen if r[name] is not None] for name in STEM_NAMES}
        means = {name: round(float(np.mean(v)), 3) for name, v in values.items() if v}
        if means:
            table[condition] = means | {"mean": round(float(np.mean(list(means.values()))), 3)}
    return table


def validation_sdr(
    loaded: learned.LoadedSeparator, examples: list[dict], conditions: list[str]
) -> dict[str, dict[str, float]]:
    """A learned separator's SDR table (`by_condition`) on the validation renders, separated as the pipeline does:
    how a candidate is scored, and how the champion is re-scored against it."""
    return by_condition(
        score(examples, lambda mix, rate: learned.separate_with_learned(mix, rate, loaded).stems), conditions
    )


def mean_sdr(table: dict[str, dict[str, float]]) -> float:
    """The family's registry score: mean SDR over stems and conditions."""
    return float(np.mean([row["mean"] for row in table.values()]))


def promotion(learned_table: dict, baseline_table: dict) -> tuple[bool, float, float]:
    """(promoted, mean gain over all conditions and stems, worst gain of a stem in a condition): promoted when
    the mean gain is positive and no stem is worse in any condition."""
    gains = [
        learned_table[c][s] - baseline_table[c][s] for c in learned_table for s in STEM_NAMES if s in learned_table[c]
    ]
    mean_gain = float(np.mean([learned_table[c]["mean"] - baseline_table[c]["mean"] for c in learned_table]))
    return mean_gain > 0 and min(gains) >= 0, round(mean_gain, 3), round(float(min(gains)), 3)


def train_separator(
    out: Path = SHIPPED_MODELS,
    corpus: Path = DEFAULT_CORPUS,
    seed: int = 0,
    max_pieces: int | None = None,
    steps: int = SeparatorSettings.steps,
    width: int = SeparatorSettings.width,
    workers: int = 0,
    meter_cache: Path = ANALYSIS_METERS,
    device: str = "auto",
    log=lambda line: print(line, flush=True),
    catalog: dict[str, Path] | None = None,
) -> tuple[Path, list[Path], list[str]]:
    """Render the corpus (cached), train, score beside the DSP fallback and write `stem_separator.onnx` and its
    card to `out`. Returns the ONNX path, and the validation renders and their conditions (on which a champion is
    re-scored, `validation_sdr`). `meter_cache`: the pieces' time signatures, shared with the analysers'
    corpus (parsing every piece takes minutes). `catalog`: the SoundFonts to render with (name -> path;
    default: every one on this machine, `available_soundfonts`)."""
    import torch

    catalog = analysis_corpus.soundfont_catalog(catalog, log)
    device = pick_device(device)  # named in the command: a GPU's weights differ from a CPU's in the last bits
    arguments = ["--seed", seed, "--steps", steps, "--width", width, "--device", device]
    source = source_of_training(
        "pipeline_project.training.train_separator",
        arguments + (["--max-pieces", max_pieces] if max_pieces else []),
        device=device,
    )
    started = time.monotonic()
    plans = {
        "train": analysis_corpus.plan_renders("train", list(catalog), 1, seed, max_pieces, meter_cache=meter_cache),
        "validation": analysis_corpus.plan_renders(
            "validation",
            list(catalog),
            1,
            seed,
            max(1, max_pieces // 8) if max_pieces else None,
            meter_cache=meter_cache,
        ),
    }
    paths = {
        split: separator_corpus.build(split_plans, corpus / split, catalog, workers, log)
        for split, split_plans in plans.items()
    }
    log(
        f"corpus ready in {time.monotonic() - started:.0f} s: {len(paths['train'])} training renders, "
        f"{len(paths['validation'])} validation renders"
    )
    separator_corpus.prepare_harmonic(paths["train"] + paths["validation"], workers, log)
    examples = {
        split: [separator_corpus.load(p, harmonic=True) for p in split_paths] for split, split_paths in paths.items()
    }

    # Two threads whatever the machine: the weights then do not depend on how many cores it has.
    torch.set_num_threads(2)
    settings = SeparatorSettings(seed=seed, steps=steps, width=width)
    network, record = train(examples["train"], examples["validation"], settings, device, log)

    out.mkdir(parents=True, exist_ok=True)
    path = out / learned.SHIPPED_SEPARATOR.name
    export_onnx(network, path)
    version = f"{seed}-{sha256_of(path)[:12]}"
    loaded = learned.load_separator(path)
    conditions = [p.condition for p in plans["validation"]]
    tables = {
        "learned": validation_sdr(loaded, examples["validation"], conditions),
        "dsp": by_condition(score(examples["validation"], lambda m, r: separate_with_fallback(m, r).stems), conditions),
    }
    promoted, mean_gain, worst_gain = promotion(tables["learned"], tables["dsp"])
    log(
        f"validation SDR (held-out pieces and SoundFonts, mid signal): learned {tables['learned']}\n  DSP fallback {tables['dsp']}\n"
        f"  mean gain {mean_gain:+.2f} dB, worst stem in a condition {worst_gain:+.2f} dB, promoted: {promoted}"
    )
    card = {
        "name": "stem_separator",
        "version": version,
        "file": path.name,
        "network": "MaskNetwork",
        "made_by": "make train-separator (python -m pipeline_project.training.train_separator)",
        **source,
        "seed": seed,
        "sample_rate": learned.SAMPLE_RATE,
        "n_fft": learned.N_FFT,
        "hop": learned.HOP,
        "stems": list(STEM_NAMES),
        **analysis_corpus.plans_described(plans),
        "training": record,
        "validation_sdr": tables["learned"],
        "dsp_validation_sdr": tables["dsp"],
        "mean_gain_db": mean_gain,
        "worst_stem_gain_db": worst_gain,
        "promoted": promoted,
        "promotion_rule": "used instead of the DSP fallback when its mean SDR over the stems is higher and no stem's "
        "SDR is lower in any condition, on the validation renders",
        "reserved_pieces": "never used (synthesis.corpus_split)",
    }
    write_text_atomic(path.with_suffix(".json"), json.dumps(card, indent=1) + "\n")
    log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), version {version}")
    return path, paths["validation"], conditions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_MODELS)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=SeparatorSettings.steps)
    parser.add_argument("--width", type=int, default=SeparatorSettings.width, help="context features; 512 on a GPU")
    parser.add_argument("--max-pieces", type=int, default=None, help="fewer training pieces, for a quick run")
    parser.add_argument("--workers", type=int, default=0, help="render processes (0: one per core)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    args = parser.parse_args(argv)
    train_separator(
        args.out, args.corpus, args.seed, args.max_pieces, args.steps, args.width, args.workers, device=args.device
    )


if __name__ == "__main__":
    main()

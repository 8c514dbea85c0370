"""The learned analysers' corpus: renders of corpus pieces and grooves with their frame targets.

Each render is planned from a seed (`RenderPlan`): the piece, tempo (log-uniform over 50-200 BPM), whether it
gets a rhythm section (half do not: music without drums must work too), voices drawn from the split's
SoundFonts, and one listening condition. Training renders use the training pieces and SoundFonts; evaluation
renders use held-out pieces through held-out SoundFonts (`synthesis.corpus_split`). Grooves over chord
progressions add odd and compound metres (5/4, 6/8, 12/8) that the chorales lack.

A render becomes one .npz file of features and targets (`analysis.frames`), named by a digest of its plan,
so a corpus is built once and reused: re-running only renders what is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline_project.analysis import frames
from pipeline_project.files import atomic_path, write_text_atomic
from pipeline_project.synthesis.corpus_split import pieces_in, soundfont_split

CONDITIONS = {"clean": (), "room": ("room",), "reverb_noise": ("room", "noise"), "concert": ("concert",)}
TEMPO_RANGE_BPM = (50.0, 200.0)
WITHOUT_DRUMS_SHARE = 0.5
GROOVE_SHARE = 0.15  # renders that are a groove over a progression rather than a corpus piece
MAX_QUARTER_NOTES = 64.0  # long enough for a modulation; longer renders add little but cost render time
REVERB_NOISE_SNR_DB = 20.0
# Bump when a plan's meaning changes, so cached renders are made again (2: grooves' keys; 3: local keys that
# stay in the piece's own key where the score never modulates).
PLAN_VERSION = 3


@dataclass(frozen=True)
class RenderPlan:
    piece: str  # a corpus name, or "groove:<style>:<progression>:<key>"
    split: str
    soundfonts: tuple[str, ...]
    tempo_bpm: float
    groove: str | None  # rhythm section style, None for none
    condition: str
    seed: int

    def digest(self) -> str:
        text = json.dumps(asdict(self) | {"version": PLAN_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _time_signature(piece: str) -> str:
    from pipeline_project.synthesis.arrangement import from_corpus

    return from_corpus(piece, max_ql=MAX_QUARTER_NOTES).time_signature


def time_signatures(pieces: list[str], cache: Path | None = None, workers: int = 0) -> dict[str, str]:
    """Each piece's time signature, parsed in parallel (a chorale takes about a second to parse) and kept
    in `cache` (a JSON file) for the next plan."""
    from pipeline_project.parallel import map_in_processes

    known = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    missing = [p for p in pieces if p not in known]
    known.update(zip(missing, map_in_processes(_time_signature, missing, workers)))
    if cache and missing:
        write_text_atomic(cache, json.dumps(known, indent=0, sort_keys=True))
    return known


def soundfont_catalog(catalog: dict[str, Path] | None, log) -> dict[str, Path]:
    """The SoundFonts a training run renders with: `catalog`, or every one on this machine. With one alone,
    training and validation share it (`soundfont_split`), and the log says so."""
    from pipeline_project.synthesis.render import available_soundfonts

    catalog = available_soundfonts() if catalog is None else catalog
    if len(catalog) < 2:
        log(
            f"only {len(catalog)} SoundFont here ({', '.join(catalog)}): training and validation share it, so the "
            "validation scores are not on unheard timbres (`make soundfonts` installs two more; in Dagster the "
            "renderer's folder, PIPELINE_SOUNDFONT_DIR, adds your own)"
        )
    return catalog


def plan_renders(
    split: str,
    soundfonts: list[str],
    renders_per_piece: int,
    seed: int,
    max_pieces: int | None = None,
    conditions: tuple[str, ...] = tuple(CONDITIONS),
    every_condition: bool = False,
    meter_cache: Path | None = None,
) -> list[RenderPlan]:
    """Every render of a split. 'train' uses the training SoundFonts, 'validation' and 'test' the held-out ones.
    Each render takes one of `conditions` at random, or, with `every_condition`, is planned once in each (the
    same performance, for evaluation per condition)."""
    from pipeline_project.synthesis.grooves import GROOVE_STYLES, PROGRESSIONS, style_for_meter

    rng = np.random.default_rng([seed, ["train", "validation", "test"].index(split)])
    fonts = tuple(soundfont_split(soundfonts)["train" if split == "train" else "evaluation"])
    pieces = pieces_in(split)
    rng.shuffle(pieces)
    pieces = pieces[:max_pieces] if max_pieces else pieces
    groove_count = int(round(len(pieces) * GROOVE_SHARE / (1 - GROOVE_SHARE)))
    keys = ("C:major", "G:major", "D:major", "F:major", "Bb:major", "A:minor", "E:minor", "D:minor", "G:minor")
    styles, progressions = sorted(GROOVE_STYLES), sorted(PROGRESSIONS)
    grooves = [
        f"groove:{rng.choice(styles)}:{rng.choice(progressions)}:{rng.choice(keys)}" for _ in range(groove_count)
    ]
    meters = time_signatures(pieces, meter_cache)
    plans = []
    for piece in [*pieces, *grooves]:
        meter = meters.get(piece)
        for _ in range(renders_per_piece):
            tempo = float(np.exp(rng.uniform(*np.log(TEMPO_RANGE_BPM))))
            if piece.startswith("groove:"):
                groove = piece.split(":")[1]
            elif rng.uniform() < WITHOUT_DRUMS_SHARE:
                groove = None
            else:
                groove = style_for_meter(meter, str(rng.choice(styles)))
            drawn, render_seed = str(rng.choice(conditions)), int(rng.integers(0, 2**31))
            for condition in conditions if every_condition else (drawn,):
                plans.append(RenderPlan(piece, split, fonts, round(tempo, 2), groove, condition, render_seed))
    return plans


def arrangement_of(plan: RenderPlan):
    from pipeline_project.synthesis.arrangement import from_corpus
    from pipeline_project.synthesis.grooves import groove_only, meter_of, with_rhythm_section

    if plan.piece.startswith("groove:"):
        _, style, progression, key = plan.piece.split(":", 3)
        beats, _, beat_ql = meter_of(style)
        return groove_only(style, max(4, int(MAX_QUARTER_NOTES // (beats * beat_ql))), plan.seed, key, progression)
    score = from_corpus(plan.piece, max_ql=MAX_QUARTER_NOTES)
    return with_rhythm_section(score, plan.groove, plan.seed) if plan.groove else score


def render_stems(plan: RenderPlan, catalog: dict[str, Path]):
    """(RenderedAudio: stems and their mix, labels) of one plan's performance, before its listening condition."""
    from pipeline_project.synthesis.instruments import choose_voices
    from pipeline_project.synthesis.performance import perform, sample_humanization
    from pipeline_project.synthesis.render import render, soundfont_presets

    arrangement = arrangement_of(plan)
    rng = np.random.default_rng(plan.seed)
    presets = {name: p for name, p in soundfont_presets(catalog).items() if name in plan.soundfonts}
    voices = choose_voices(arrangement.parts(), presets, int(rng.integers(0, 2**31)))
    performance = perform(arrangement, plan.tempo_bpm, plan.seed, sample_humanization(rng), voices)
    return render(performance, catalog), performance.labels()


def render_clean(plan: RenderPlan, catalog: dict[str, Path]) -> tuple[np.ndarray, int, dict]:
    """(mix, sample rate, labels) of one plan's performance, before its listening condition."""
    rendered, labels = render_stems(plan, catalog)
    return rendered.mix, rendered.sample_rate, labels


def condition_chain(condition: str, seed: int) -> dict | None:
    """The augmentation chain record of one of CONDITIONS, its parameters drawn from `seed`; None for clean."""
    from pipeline_project.augmentation.chains import sample_chain

    presets = CONDITIONS[condition]
    if not presets:
        return None
    return sample_chain(presets, seed=seed, snr_db=REVERB_NOISE_SNR_DB if condition == "reverb_noise" else None)


def apply_condition(mix: np.ndarray, sample_rate: int, condition: str, seed: int) -> np.ndarray:
    """The mix heard in one of CONDITIONS; the chain's parameters drawn from `seed`."""
    from pipeline_project.augmentation.chains import apply_chain

    chain = condition_chain(condition, seed)
    return apply_chain(mix, sample_rate, chain).audio if chain else mix


def heard_stems(stems: dict[str, np.ndarray], sample_rate: int, condition: str, seed: int) -> dict[str, np.ndarray]:
    """Each stem as heard in a condition, without the condition's noise: what a separator should recover
    from the mix heard there (`apply_condition` of the stems' sum, same seed). The room and the PA's EQ are
    linear and the final limiter is a gain curve (taken from the degraded mix), so these stems sum to the
    degraded mix less its noise."""
    from pipeline_project.audio.dynamics import limiter_gain
    from pipeline_project.augmentation.chains import apply_chain

    chain = condition_chain(condition, seed)
    if not chain:
        return stems
    *before, limiter = chain["steps"]
    assert limiter["name"] == "limiter", "a condition's chain ends with its limiter"
    degraded = apply_chain(sum(stems.values()), sample_rate, chain | {"steps": before}).audio
    gain = limiter_gain(degraded, sample_rate, limiter["threshold_db"], release_ms=limiter["release_ms"])
    linear = chain | {"steps": [step for step in before if step["name"] in ("eq", "room")]}
    return {name: apply_chain(audio, sample_rate, linear).audio * gain for name, audio in stems.items()}


def render_plan(plan: RenderPlan, catalog: dict[str, Path]) -> tuple[np.ndarray, int, dict]:
    """(mix, sample rate, labels) of one plan: rendered, then put through its condition."""
    mix, rate, labels = render_clean(plan, catalog)
    return apply_condition(mix, rate, plan.condition, plan.seed), rate, labels


def to_analysis_rate(mix: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    mono = mix.mean(axis=0) if mix.ndim == 2 else mix
    if sample_rate != frames.RATE:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=frames.RATE, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _write(job: tuple[RenderPlan, dict[str, Path], Path]) -> str:
    plan, catalog, folder = job
    path = folder / f"{plan.digest()}.npz"
    if path.exists():
        return path.name
    mix, rate, labels = render_plan(plan, catalog)
    mono = to_analysis_rate(mix, rate)
    duration = len(mono) / frames.RATE
    wanted = frames.targets(labels, duration)
    beat_in, harmony_in = frames.beat_features(mono), frames.harmony_features(mono)
    meta = {
        "plan": asdict(plan),
        "tempo_bpm": labels["tempo_bpm"],
        "key": labels["key"],
        "time_signature": labels["time_signature"],
        "duration": duration,
        "beats": labels["beats"],
        "downbeats": labels["downbeats"],
        "chords": labels["chords"],
        "local_keys": frames.local_keys(labels),
    }
    with atomic_path(path) as temporary:
        np.savez_compressed(
            temporary,
            beat_features=beat_in,
            harmony_features=harmony_in,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            **wanted,
        )
    return path.name


def build(
    plans: list[RenderPlan], folder: Path, catalog: dict[str, Path], workers: int = 0, log=print, write=None
) -> list[Path]:
    """Render every plan not yet in `folder`; the paths of all of them, in plan order. `write((plan, catalog,
    folder))` makes one file (a module-level function; default: this corpus's features and targets)."""
    from pipeline_project.parallel import map_in_processes

    folder.mkdir(parents=True, exist_ok=True)
    missing = [p for p in plans if not (folder / f"{p.digest()}.npz").exists()]
    log(f"{len(plans)} renders planned, {len(missing)} to make in {folder}")
    for done, _ in enumerate(
        map_in_processes(write or _write, [(p, catalog, folder) for p in missing], workers), start=1
    ):
        if done % 20 == 0 or done == len(missing):
            log(f"  {done}/{len(missing)} rendered")
    return [folder / f"{p.digest()}.npz" for p in plans]


def load_meta(path: Path) -> dict:
    """Only the labels record of a render (np.load reads an .npz member when it is asked for)."""
    with np.load(path) as data:
        return json.loads(bytes(data["meta"]).decode())


def load(path: Path) -> dict:
    with np.load(path) as data:
        example = {k: data[k] for k in data.files if k != "meta"}
        example["meta"] = json.loads(bytes(data["meta"]).decode())
    return example


def plans_described(plans: dict[str, list]) -> dict:
    """For a model card: how many renders trained and validated the network, through which SoundFonts, in which
    listening conditions (`plans`: {"train": [...], "validation": [...]} of render plans)."""
    fonts = {split: sorted({f for p in split_plans for f in p.soundfonts}) for split, split_plans in plans.items()}
    return {
        "training_renders": len(plans["train"]),
        "validation_renders": len(plans["validation"]),
        "training_soundfonts": fonts["train"],
        "validation_soundfonts": fonts["validation"],
        "conditions": list(CONDITIONS),
    }

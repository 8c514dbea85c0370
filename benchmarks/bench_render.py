"""Rendering speed of the project's FluidSynth path beside the `fluidsynth` command-line program.

The same MIDI files (corpus excerpts with a generated rhythm section, and grooves, written with pretty_midi)
are rendered to 44.1 kHz WAV files by both, one file at a time on one core, with the same SoundFont and
FluidSynth's reverb and chorus off on both sides. The project's time covers what its renderer does for a
MIDI file: parse it, render every part alone in its own FluidSynth instance, loudness-normalize the stems
(BS.1770), limit the mix and write the WAV. Target: at least 0.9x the CLI's speed.

    make bench-setup        # the bench extra and the fluidsynth program (Debian package fluidsynth)
    .venv/bin/python benchmarks/bench_render.py [--files N] [--repeats R] [--soundfont PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pretty_midi  # noqa: E402
import soundfile  # noqa: E402

from pipeline_project.synthesis.arrangement import from_corpus  # noqa: E402
from pipeline_project.synthesis.grooves import groove_only, with_rhythm_section  # noqa: E402
from pipeline_project.synthesis.performance import midi_performance, perform  # noqa: E402
from pipeline_project.synthesis.render import available_soundfonts, render  # noqa: E402

PIECES = ("bach/bwv26.6", "bach/bwv165.6", "bach/bwv194.6", "bach/bwv244.3")
GROOVES = ("funk", "shuffle_12_8", "waltz", "jazz_ride")


def write_midi(performance, path: Path) -> None:
    midi = pretty_midi.PrettyMIDI()
    by_part: dict[str, pretty_midi.Instrument] = {}
    for note in performance.notes:
        if note.part not in by_part:
            by_part[note.part] = pretty_midi.Instrument(
                program=max(note.program, 0), is_drum=note.is_drum, name=note.part
            )
        by_part[note.part].notes.append(pretty_midi.Note(note.velocity, note.pitch, note.onset, note.offset))
    midi.instruments = list(by_part.values())
    midi.write(str(path))


def make_midi_files(folder: Path, count: int) -> list[Path]:
    files = []
    for index in range(count):
        if index % 2 == 0:
            arrangement = with_rhythm_section(from_corpus(PIECES[(index // 2) % len(PIECES)]), "rock", seed=index)
        else:
            arrangement = groove_only(GROOVES[(index // 2) % len(GROOVES)], 16, seed=index)
        path = folder / f"piece{index}.mid"
        write_midi(perform(arrangement, 100, seed=index), path)
        files.append(path)
    return files


def render_with_project(path: Path, soundfont: Path, out: Path) -> float:
    performance = midi_performance(path, soundfont.name)
    audio = render(performance, {soundfont.name: soundfont})
    soundfile.write(out, audio.mix.T, audio.sample_rate, subtype="PCM_16")
    return performance.duration


def render_with_cli(path: Path, soundfont: Path, out: Path) -> None:
    subprocess.run(
        [
            "fluidsynth",
            "-ni",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "0.5",
            "-r",
            "44100",
            "-T",
            "wav",
            "-F",
            str(out),
            str(soundfont),
            str(path),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--soundfont", type=Path, default=None, help="default: FluidR3_GM when installed, else TimGM6mb"
    )
    args = parser.parse_args()
    if shutil.which("fluidsynth") is None:
        raise SystemExit(
            "the fluidsynth program is missing: run `make bench-setup` (Debian: apt-get install fluidsynth)"
        )
    catalog = available_soundfonts()
    soundfont = args.soundfont or catalog.get("FluidR3_GM.sf2") or catalog["TimGM6mb.sf2"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = make_midi_files(folder, args.files)
        audio_seconds = sum(render_with_project(f, soundfont, folder / "warm.wav") for f in files)  # warm caches
        render_with_cli(files[0], soundfont, folder / "warm_cli.wav")
        best = {"project": np.inf, "fluidsynth CLI": np.inf}
        for _ in range(args.repeats):
            started = time.perf_counter()
            for f in files:
                render_with_project(f, soundfont, folder / f"{f.stem}.project.wav")
            best["project"] = min(best["project"], time.perf_counter() - started)
            started = time.perf_counter()
            for f in files:
                render_with_cli(f, soundfont, folder / f"{f.stem}.cli.wav")
            best["fluidsynth CLI"] = min(best["fluidsynth CLI"], time.perf_counter() - started)
    print(
        f"{len(files)} MIDI files, {audio_seconds:.1f} s of audio, SoundFont {soundfont.name}, best of {args.repeats}"
    )
    print(f"{'renderer':<16} {'seconds':>8} {'x real time':>12}")
    for name, seconds in best.items():
        print(f"{name:<16} {seconds:>8.2f} {audio_seconds / seconds:>12.1f}")
    ratio = best["fluidsynth CLI"] / best["project"]
    print(f"speed ratio project / CLI: {ratio:.2f}x (target >= 0.9x): {'PASS' if ratio >= 0.9 else 'FAIL'}")


if __name__ == "__main__":
    main()

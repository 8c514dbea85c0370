"""Where a model set's weights came from, and making them again from there: `make reproduce-models`.

A trainer (`train_analysis`, `train_separator`) writes into each card the commit of the code that trained it
(`source_commit`, and `source_changed` where that code had changes not yet committed), the command that
makes the same weights (`made_with`: the module and the arguments that change weights; the output folder,
the render cache and the worker count do not) and the arithmetic it ran on (`trained_on`). The same seed,
commit, lock and SoundFonts give the same weights on the same kind of processor (one thread per network,
whatever the core count), so reproducing a set is: check the code out at that commit beside this one, run
the command there with this environment, and compare the networks' digests with the cards' versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline_project.analysis.learned import SHIPPED_MODELS

REPOSITORY = Path(__file__).resolve().parents[2]
# What decides the weights besides the arguments: the package's code and the locked packages. The shipped
# networks (pipeline_project/models) are outputs, not code.
SOURCE_PATHS = ("pipeline_project", ":(exclude)pipeline_project/models", "uv.lock")
LOCK = "uv.lock"


class ReproductionError(RuntimeError):
    """A model set that cannot be made again here, and why."""


def _git(*arguments: str, cwd: Path = REPOSITORY) -> str:
    return subprocess.run(["git", *arguments], cwd=cwd, capture_output=True, text=True, check=True).stdout


def arithmetic(device: str = "cpu") -> str:
    """The floating-point arithmetic a training runs on: the processor and the kernels torch picks for it. The
    same code and renders give other weights on another kind: oneDNN, MKL and torch's own kernels each choose
    code by instruction set, which moves the last bits of a sum, and training amplifies them (measured: two
    AVX-512 machines, the same renders, the same losses to four decimals for 75 steps, 1e-4 apart at step 100,
    another network at the end)."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"no CUDA device (torch {torch.__version__})"
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux
        pass
    processor = (
        f"{fields['model name']} ({fields['vendor_id']} family {fields['cpu family']} model {fields['model']})"
        if {"model name", "vendor_id", "cpu family", "model"} <= set(fields)
        else platform.processor() or platform.machine()
    )
    return f"{processor}, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"


def source_of_training(module: str, arguments: list[str], repository: Path = REPOSITORY, device: str = "cpu") -> dict:
    """The card fields that say which code made a network, on what arithmetic (`arithmetic` of `device`), and
    how to make it again; call before training (training writes the shipped networks into the package).
    Without git (an installed package) the commit is unknown: None."""
    try:
        commit = _git("rev-parse", "HEAD", cwd=repository).strip()
        changed = bool(_git("status", "--porcelain", "--", *SOURCE_PATHS, cwd=repository).strip())
    except (OSError, subprocess.CalledProcessError):
        commit, changed = None, False
    return {
        "source_commit": commit,
        "source_changed": changed,
        "made_with": {"module": module, "arguments": [str(a) for a in arguments]},
        "trained_on": arithmetic(device),
    }


def device_of(card: dict) -> str:
    """Where a card's network trained, from its command: the separator's `--device`, the harmony network's
    `--harmony-device` (train_analysis trains the beat network on the CPU whatever it is given)."""
    arguments = card["made_with"]["arguments"]
    option = "--harmony-device" if card.get("network") == "HarmonyNetwork" else "--device"
    return arguments[arguments.index(option) + 1] if option in arguments else "cpu"


def recipes(folder: Path) -> dict[tuple, list[dict]]:
    """The cards of a model set folder grouped by what makes their networks: (commit, module, arguments) ->
    cards. A card that cannot be made again (no recorded source, or made from uncommitted changes) is refused
    with the reason."""
    cards = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    groups: dict[tuple, list[dict]] = {}
    for card in cards:
        name = card.get("name", "?")
        if not card.get("source_commit") or "made_with" not in card:
            raise ReproductionError(
                f"{folder / (name + '.json')}: the card does not record the commit and command that trained it "
                "(made before cards recorded them); retrain it to get a card that does"
            )
        if card.get("source_changed"):
            raise ReproductionError(
                f"{name} {card.get('version')} was trained from changes not committed at {card['source_commit']}: "
                "no commit holds the code that made it"
            )
        made_with = card["made_with"]
        groups.setdefault((card["source_commit"], made_with["module"], tuple(made_with["arguments"])), []).append(card)
    if not groups:
        raise ReproductionError(f"{folder}: no model cards")
    return groups


def check_environment(commit: str, cards: list[dict], soundfonts: set[str], lock: Path, machine: str) -> None:
    """Refuse early where this machine would train something else: another lock, other SoundFonts (the
    trainers render with every SoundFont they find and hold some out by name), or other arithmetic (`machine`:
    this machine's `arithmetic` for the cards' device; a card that does not name its own is let through)."""
    try:
        locked = _git("show", f"{commit}:{LOCK}")
    except subprocess.CalledProcessError as error:
        raise ReproductionError(f"commit {commit} is not in this repository ({error.stderr.strip()})") from None
    if locked != lock.read_text():
        raise ReproductionError(
            f"{LOCK} at {commit} differs from this checkout's: the packages that trained the networks are not "
            f"the ones installed here (from a checkout with that commit's {LOCK}, run make setup, then "
            "python -m pipeline_project.training.reproduce --models naming this set)"
        )
    wanted = {name for card in cards for name in card["training_soundfonts"] + card["validation_soundfonts"]}
    if wanted != soundfonts:
        raise ReproductionError(
            f"the networks were made with the SoundFonts {sorted(wanted)}; this machine has {sorted(soundfonts)} "
            "(make soundfonts installs the usual ones; others change which renders exist and which are held out)"
        )
    for card in cards:
        if card.get("trained_on", machine) != machine:
            raise ReproductionError(
                f"{card['name']} was trained on {card['trained_on']}; this machine is {machine}: the same code "
                "and renders make other weights on another kind of processor (see training.reproduce.arithmetic)"
            )


def _checkout(commit: str, work: Path) -> Path:
    """The code at `commit`, checked out beside this one (a git worktree, even for this checkout's own commit:
    uncommitted changes here never leak into the networks made)."""
    tree = work / f"source-{commit[:12]}"
    try:
        _git("worktree", "add", "--detach", str(tree), commit)
    except subprocess.CalledProcessError as error:
        raise ReproductionError(f"cannot check {commit} out into {tree}: {error.stderr.strip()}") from None
    return tree


def reproduce(
    folder: Path = SHIPPED_MODELS, work: Path | None = None, log=lambda line: print(line, flush=True)
) -> dict[str, bool]:
    """Train every network of the model set in `folder` again from its card's commit and command, and compare
    the weights: {card name: same digest as its version}. `work` holds the checkouts, the renders (made afresh:
    renders made by other code may differ) and the outputs; a temporary folder by default, removed after."""
    from pipeline_project.synthesis.render import available_soundfonts
    from pipeline_project.training.train_analysis import file_digest

    groups = recipes(folder)
    soundfonts = set(available_soundfonts())
    for (commit, _, _), cards in groups.items():
        for device in sorted({device_of(card) for card in cards}):
            on_device = [card for card in cards if device_of(card) == device]
            check_environment(commit, on_device, soundfonts, REPOSITORY / LOCK, arithmetic(device))
        if any("trained_on" not in card for card in cards):
            log(
                f"{', '.join(c['name'] for c in cards)}: the cards do not name the processor that trained them "
                "(written before they did): the weights match only if it was this kind"
            )
    with tempfile.TemporaryDirectory(prefix="reproduce-") as scratch:
        work = Path(work or scratch).resolve()  # git runs in the repository, the trainings in their checkouts
        work.mkdir(parents=True, exist_ok=True)
        same: dict[str, bool] = {}
        worktrees: dict[str, Path] = {}  # one checkout per commit, shared by the commands made there
        try:
            for (commit, module, arguments), cards in groups.items():
                if commit not in worktrees:
                    worktrees[commit] = _checkout(commit, work)
                tree = worktrees[commit]
                out = work / f"out-{commit[:12]}-{module.rsplit('.', 1)[-1]}"
                corpus = work / f"corpus-{commit[:12]}-{module.rsplit('.', 1)[-1]}"
                command = [sys.executable, "-m", module, *arguments, "--out", str(out), "--corpus", str(corpus)]
                log(f"training at {commit[:12]} ({', '.join(c['name'] for c in cards)}): {' '.join(command[1:])}")
                started = time.monotonic()
                environment = os.environ | {"PYTHONPATH": str(tree)}
                if subprocess.run(command, cwd=tree, env=environment).returncode:
                    raise ReproductionError(f"training at {commit} failed: {' '.join(command[1:])} (its output above)")
                log(f"trained in {time.monotonic() - started:.0f} s")
                for card in cards:
                    made = out / card["file"]
                    digest = file_digest(made) if made.exists() else "nothing"
                    same[card["name"]] = digest == card["version"].split("-", 1)[-1]
                    log(
                        f"{card['name']} {card['version']}: "
                        + ("reproduced" if same[card["name"]] else f"differs (the network made has digest {digest})")
                    )
        finally:
            for tree in worktrees.values():
                _git("worktree", "remove", "--force", str(tree))
    return same


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=SHIPPED_MODELS, help="the model set folder to reproduce")
    parser.add_argument("--work", type=Path, default=None, help="checkouts and outputs (default: temporary)")
    args = parser.parse_args(argv)
    try:
        same = reproduce(args.models, args.work)
    except ReproductionError as error:
        sys.exit(f"cannot reproduce {args.models}: {error}")
    if not all(same.values()):
        sys.exit(f"not reproduced: {sorted(name for name, ok in same.items() if not ok)}")
    print(f"every network reproduced: {sorted(same)}")


if __name__ == "__main__":
    main()

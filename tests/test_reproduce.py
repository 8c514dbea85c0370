"""Where a model set's weights came from (`training.reproduce`): what the cards record and when a set is refused."""

import json
import subprocess

import pytest

from pipeline_project.analysis import learned
from pipeline_project.training import reproduce


def git(folder, *arguments):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *arguments],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_card_names_the_commit_that_trained_it_and_whether_the_code_had_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # `plain` is in no repository, wherever tmp is
    plain, tmp_path = tmp_path / "plain", tmp_path / "repository"
    plain.mkdir()
    (tmp_path / "pipeline_project" / "models").mkdir(parents=True)
    (tmp_path / "pipeline_project" / "code.py").write_text("x = 1\n")
    (tmp_path / "pipeline_project" / "models" / "net.onnx").write_bytes(b"0")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    commit = git(tmp_path, "rev-parse", "HEAD")

    source = reproduce.source_of_training("some.trainer", ["--seed", 3], tmp_path)
    assert source == {
        "source_commit": commit,
        "source_changed": False,
        "made_with": {"module": "some.trainer", "arguments": ["--seed", "3"]},
        "trained_on": reproduce.arithmetic(),  # the processor, the kernels torch picks for it, torch's version
    }
    assert "torch" in source["trained_on"]
    # A network the training writes into the package is output, not code: the source is still the commit's.
    (tmp_path / "pipeline_project" / "models" / "net.onnx").write_bytes(b"1")
    assert not reproduce.source_of_training("some.trainer", [], tmp_path)["source_changed"]
    (tmp_path / "pipeline_project" / "new.py").write_text("y = 2\n")
    assert reproduce.source_of_training("some.trainer", [], tmp_path)["source_changed"]
    # Outside a git checkout (an installed package) the commit is unknown.
    assert reproduce.source_of_training("some.trainer", [], plain)["source_commit"] is None


def test_the_shipped_cards_say_how_to_make_their_networks_again():
    groups = reproduce.recipes(learned.SHIPPED_MODELS)
    names = sorted(card["name"] for cards in groups.values() for card in cards)
    assert {"beat_tracker", "chord_recognizer", "key_tracker"} <= set(names)
    for (commit, module, arguments), cards in groups.items():
        assert len(commit) == 40 and module.startswith("pipeline_project.training.")
        assert "--seed" in arguments and "--out" not in arguments  # where the set is written changes nothing
        assert all(card["version"].startswith(arguments[arguments.index("--seed") + 1] + "-") for card in cards)


def test_a_set_is_refused_where_it_cannot_be_made_again(tmp_path):
    card = json.loads((learned.SHIPPED_MODELS / "beat_tracker.json").read_text())
    for name, changes, reason in (
        ("old", {"source_commit": None}, "does not record the commit"),
        ("changed", {"source_changed": True}, "not committed"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "beat_tracker.json").write_text(json.dumps(card | changes))
        with pytest.raises(reproduce.ReproductionError, match=reason):
            reproduce.recipes(folder)

    head = git(reproduce.REPOSITORY, "rev-parse", "HEAD")
    lock = reproduce.REPOSITORY / reproduce.LOCK
    fonts = set(card["training_soundfonts"] + card["validation_soundfonts"])
    here = reproduce.arithmetic()
    if not git(reproduce.REPOSITORY, "status", "--porcelain", "--", reproduce.LOCK):  # the committed lock
        reproduce.check_environment(head, [card], fonts, lock, here)  # nothing to refuse
        reproduce.check_environment(head, [card | {"trained_on": here}], fonts, lock, here)
    with pytest.raises(reproduce.ReproductionError, match="SoundFonts"):
        reproduce.check_environment(head, [card], fonts | {"Other.sf2"}, lock, here)
    with pytest.raises(reproduce.ReproductionError, match="another kind of processor"):
        reproduce.check_environment(head, [card | {"trained_on": "Another CPU, AVX2"}], fonts, lock, here)
    other_lock = tmp_path / "uv.lock"
    other_lock.write_text(lock.read_text() + "\n# another package\n")
    with pytest.raises(reproduce.ReproductionError, match="differs from this checkout"):
        reproduce.check_environment(head, [card], fonts, other_lock, here)
    with pytest.raises(reproduce.ReproductionError, match="not in this repository"):
        reproduce.check_environment("0" * 40, [card], fonts, lock, here)


def test_each_commit_is_checked_out_beside_this_one_and_a_checkout_in_the_way_is_refused(tmp_path):
    head = git(reproduce.REPOSITORY, "rev-parse", "HEAD")
    tree = reproduce._checkout(head, tmp_path)
    try:
        assert git(tree, "rev-parse", "HEAD") == head and (tree / "pipeline_project" / "training").is_dir()
        with pytest.raises(reproduce.ReproductionError, match="cannot check"):
            reproduce._checkout(head, tmp_path)
    finally:
        git(reproduce.REPOSITORY, "worktree", "remove", "--force", str(tree))
    assert str(tree) not in git(reproduce.REPOSITORY, "worktree", "list")


def test_a_harmony_network_trained_on_a_gpu_says_so_and_is_refused_where_there_is_none():
    import torch

    from pipeline_project.training import analysis_models

    beat = json.loads((learned.SHIPPED_MODELS / "beat_tracker.json").read_text())
    arguments = beat["made_with"]["arguments"] + ["--harmony-size", "gpu", "--harmony-device", "cuda"]
    harmony = beat | {
        "name": "chord_recognizer",
        "network": "HarmonyNetwork",
        "made_with": {"module": "pipeline_project.training.train_analysis", "arguments": arguments},
        "trained_on": "NVIDIA H200 (torch 2.11.0+cu130, CUDA 13.0)",
    }
    # One command, two devices: train_analysis trains the beat network on the CPU whatever it is given.
    assert reproduce.device_of(harmony) == "cuda"
    assert reproduce.device_of(beat | {"made_with": harmony["made_with"]}) == "cpu"
    assert analysis_models.harmony_settings("gpu", 3, 10, 8) == analysis_models.TrainingSettings(
        seed=3, **analysis_models.HARMONY_ON_GPU
    )
    assert analysis_models.harmony_settings("cpu", 3, 10, 8) == analysis_models.TrainingSettings(3, 10, width=8)
    with pytest.raises(ValueError, match="cpu or gpu"):
        analysis_models.harmony_settings("tpu", 3, 10, 8)
    if torch.cuda.is_available():
        return
    assert reproduce.arithmetic("cuda").startswith("no CUDA device")
    head = git(reproduce.REPOSITORY, "rev-parse", "HEAD")
    fonts = set(beat["training_soundfonts"] + beat["validation_soundfonts"])
    with pytest.raises(reproduce.ReproductionError, match="NVIDIA H200"):
        reproduce.check_environment(
            head, [harmony], fonts, reproduce.REPOSITORY / reproduce.LOCK, reproduce.arithmetic("cuda")
        )

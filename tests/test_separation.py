import time
from pathlib import Path

import numpy as np
import pytest
import torch
from servers import file_server, silent_server

from pipeline_project.errors import SeparatorUnavailableError
from pipeline_project.resources import SeparatorResource
from pipeline_project.separation.demucs_download import OfflineMemory, Remote, WeightsDownloadError
from pipeline_project.separation.demucs_models import load_demucs
from pipeline_project.separation.separator import FALLBACK_NAME, separate_with_fallback


def save_small_demucs(folder: Path, name: str = "small_demucs") -> Path:
    """A small, untrained Hybrid Demucs saved exactly like a pretrained package (`<name>.th`)."""
    from demucs.hdemucs import HDemucs

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = HDemucs(channels=4, sources=["drums", "bass", "other", "vocals"])
    args, kwargs = model._init_args_kwargs
    torch.save({"klass": HDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict()}, folder / f"{name}.th")
    return folder


@pytest.fixture(autouse=True)
def fresh_offline_warning(monkeypatch):
    """Each test is a new process as far as the once-per-process offline warning goes."""
    monkeypatch.setattr("pipeline_project.separation.demucs_download._WARNED_IN_PROCESS", [])


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory) -> Path:
    return save_small_demucs(tmp_path_factory.mktemp("models"))


def test_local_model_folder_loads_through_demucs_with_a_checksum(small_model_dir):
    loaded = load_demucs("small_demucs", str(small_model_dir))
    assert loaded is not None
    assert loaded.source.startswith("local model folder")
    assert len(loaded.weights_sha256) == 64
    assert list(loaded.model.sources) == ["drums", "bass", "other", "vocals"]


def test_separator_resource_runs_demucs_apply_model(small_model_dir, sine_stereo):
    mix, rate = sine_stereo
    separator = SeparatorResource(model_name="small_demucs", model_dir=str(small_model_dir), device="cpu")
    result = separator.separate(mix, rate)
    assert result.separator == "demucs" and result.model_name == "small_demucs"
    assert set(result.stems) == {"drums", "bass", "other", "vocals"}
    assert all(stem.shape == mix.shape for stem in result.stems.values())
    assert result.describe()["weights_sha256"] == load_demucs("small_demucs", str(small_model_dir)).weights_sha256


def test_missing_weights_fall_back_without_network_and_say_so(tmp_path, sine_stereo, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    mix, rate = sine_stereo
    with silent_server() as url:  # were a download tried, it would hang here until the timeout
        separator = SeparatorResource(
            model_name="htdemucs",
            model_dir=str(tmp_path / "empty"),
            weights="never",
            weights_url=url,
            download_timeout_s=30,
        )
        started = time.monotonic()
        assert separator.model() is None
        assert time.monotonic() - started < 5
        result = separator.separate(mix, rate)
    assert result.separator == FALLBACK_NAME
    assert result.describe()["weights_sha256"] is None
    assert "downloads are off (weights=never)" in caplog.text


def pretrained_remote(tmp_path: Path, corrupt: bool = False) -> tuple[Path, Path, str]:
    """A remote in demucs's exact format, holding a small model: `<root>/<sig>-<sha256 prefix>.th` under the
    served folder, and an index folder with `files.txt` (`root:` line, then file names) and `tiny.yaml`
    listing the bag's signature. Returns (served folder, index folder, weight file name)."""
    import hashlib

    package = save_small_demucs(tmp_path / "build", name="package") / "package.th"
    name = f"1234abcd-{hashlib.sha256(package.read_bytes()).hexdigest()[:8]}.th"
    served = tmp_path / "served"
    (served / "small_models").mkdir(parents=True)
    (served / "small_models" / name).write_bytes(b"truncated" if corrupt else package.read_bytes())
    index = tmp_path / "index"
    index.mkdir()
    (index / "files.txt").write_text(f"# small models\nroot: small_models/\n{name}\n")
    (index / "tiny.yaml").write_text("models: ['1234abcd']\nsegment: 8\n")
    return served, index, name


def test_pretrained_weights_are_downloaded_verified_cached_and_reused_offline(
    tmp_path, sine_stereo, monkeypatch, caplog
):
    caplog.set_level("INFO")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served, index, name = pretrained_remote(tmp_path)
    mix, rate = sine_stereo
    with file_server(served) as url:
        first = SeparatorResource(model_name="tiny", weights_url=url, weights_index=str(index), device="cpu")
        downloaded = first.separate(mix, rate)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert downloaded.separator == "demucs" and downloaded.weights_source == f"downloaded from {url}"
    assert cached.read_bytes() == (served / "small_models" / name).read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == [name]  # no partial file left behind
    assert f"downloaded {name}" in caplog.text and "checksum verified" in caplog.text

    # The server is gone: the cache serves, whatever the setting, without trying the network.
    for weights in ("always", "auto", "never"):
        again = SeparatorResource(
            model_name="tiny", weights=weights, weights_url=url, weights_index=str(index), device="cpu"
        )
        result = again.separate(mix, rate)
        assert result.weights_source == "torch hub cache" and result.weights_sha256 == downloaded.weights_sha256


def test_a_corrupt_download_is_rejected_and_not_cached(tmp_path, sine_stereo, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served, index, name = pretrained_remote(tmp_path, corrupt=True)
    mix, rate = sine_stereo
    with file_server(served) as url:
        strict = SeparatorResource(model_name="tiny", weights="always", weights_url=url, weights_index=str(index))
        with pytest.raises(SeparatorUnavailableError, match=f"{name}: checksum mismatch"):
            strict.separate(mix, rate)
        assert not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())
        lenient = SeparatorResource(model_name="tiny", weights="auto", weights_url=url, weights_index=str(index))
        assert lenient.separate(mix, rate).separator == FALLBACK_NAME
    assert "checksum mismatch" in caplog.text and not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())


def test_offline_auto_falls_back_within_seconds_and_warns_once(tmp_path, sine_stereo, monkeypatch, caplog):
    """A remote that accepts and never answers (the worst offline case: a dead proxy): `auto` gives up after
    the timeout, the songs after it do not wait again, and the warning is given once."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _, index, _ = pretrained_remote(tmp_path)
    mix, rate = sine_stereo
    with silent_server() as url:
        waits = []
        for _song in range(3):
            separator = SeparatorResource(model_name="tiny", weights_url=url, weights_index=str(index))
            started = time.monotonic()
            assert separator.model() is None  # what the fallback waits for
            waits.append(time.monotonic() - started)
            assert separator.separate(mix, rate).separator == FALLBACK_NAME
        assert waits[0] < 5 and max(waits[1:]) < 1, waits
        warnings = [r for r in caplog.records if r.levelname == "WARNING" and "DSP fallback" in r.getMessage()]
        assert len(warnings) == 1 and "timed out" in warnings[0].getMessage()

        strict = SeparatorResource(model_name="tiny", weights="always", weights_url=url, weights_index=str(index))
        with pytest.raises(SeparatorUnavailableError, match="weights=always forbids the fallback"):
            strict.separate(mix, rate)


def test_offline_warning_is_given_once_per_run(tmp_path):
    memory = OfflineMemory(tmp_path / "offline")
    assert [memory.first_warning("run-a"), memory.first_warning("run-a"), memory.first_warning("run-b")] == [
        True,
        False,
        True,
    ]
    memory.remember("remote into cache", "timed out")
    assert memory.recent_failure("remote into cache") == "timed out" and memory.recent_failure("elsewhere") is None
    assert OfflineMemory(tmp_path / "offline", retry_after_s=0).recent_failure("remote into cache") is None


def test_unknown_pretrained_model_names_fail_clearly(tmp_path):
    _, index, _ = pretrained_remote(tmp_path)
    with pytest.raises(WeightsDownloadError, match="no pretrained Demucs model 'nonexistent'"):
        Remote(index=index).weight_files("nonexistent")


def test_fallback_stems_sum_back_to_the_mix(sine_stereo):
    mix, rate = sine_stereo
    rng = np.random.default_rng(1)
    mix = mix + (rng.standard_normal(mix.shape) * 0.05).astype(np.float32)
    result = separate_with_fallback(mix, rate)
    assert np.allclose(sum(result.stems.values()), mix, atol=1e-4)


def test_model_folder_in_the_pretrained_bag_layout(tmp_path, sine_stereo):
    """`<name>.yaml` listing a signature and `<sig>-<sha256 prefix>.th`: how htdemucs sits in a model folder."""
    import hashlib

    folder = save_small_demucs(tmp_path / "bag", name="tmp")
    package = folder / "tmp.th"
    checksum = hashlib.sha256(package.read_bytes()).hexdigest()[:8]
    package.rename(folder / f"0badc0de-{checksum}.th")
    (folder / "my_bag.yaml").write_text("models: ['0badc0de']\n")
    loaded = load_demucs("my_bag", str(folder))
    assert loaded is not None and type(loaded.model).__name__ == "BagOfModels"
    mix, rate = sine_stereo
    result = SeparatorResource(model_name="my_bag", model_dir=str(folder), device="cpu").separate(mix, rate)
    assert result.separator == "demucs" and result.weights_sha256 == loaded.weights_sha256

    (folder / f"0badc0de-{checksum}.th").write_bytes(b"corrupted weights")
    with pytest.raises(Exception, match="checksum"):
        load_demucs("my_bag", str(folder))


def test_corrupt_weights_fail_clearly_instead_of_falling_back(tmp_path, sine_stereo):
    folder = save_small_demucs(tmp_path / "m", name="broken")
    (folder / "broken.th").write_bytes(b"not a torch file")
    mix, rate = sine_stereo
    with pytest.raises(SeparatorUnavailableError, match="could not be loaded"):
        SeparatorResource(model_name="broken", model_dir=str(folder)).separate(mix, rate)


def test_long_files_are_separated_in_windows_that_sum_to_the_mix(tmp_path):
    from pipeline_project.audio.io import read_audio, write_audio
    from pipeline_project.separation.separator import separate_with_fallback
    from pipeline_project.separation.streaming import separate_file

    rate = 22_050
    rng = np.random.default_rng(0)
    t = np.arange(rate * 7) / rate
    mix = (0.2 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    mix = np.stack([mix, np.roll(mix, 100)])
    write_audio(tmp_path / "song.flac", mix, rate)
    windows = []

    def separate(window, sample_rate):
        windows.append(window.shape[1])
        return separate_with_fallback(window, sample_rate)

    described = separate_file(tmp_path / "song.flac", tmp_path / "stems", separate, chunk_s=2.0, crossfade_s=0.5)
    assert max(windows) <= int(2.5 * rate) and len(windows) == 4
    assert described.separator.startswith("dsp-fallback") and described.settings["chunk_s"] == 2.0
    stems = {name: read_audio(tmp_path / "stems" / f"{name}.flac")[0] for name in ("drums", "bass", "other", "vocals")}
    source, _ = read_audio(tmp_path / "song.flac")
    assert all(s.shape == source.shape for s in stems.values())
    assert np.abs(sum(stems.values()) - source).max() < 1e-3  # the windows' stems still add up to the mix
    assert not list((tmp_path / "stems").glob("*.partial"))


def test_windows_hold_a_whole_number_of_demucs_strides(small_model_dir):
    """apply_model starts a segment at every stride of its input, so an aligned window wastes no segment."""
    from pipeline_project.separation.separator import demucs_chunk_seconds

    loaded = load_demucs("small_demucs", str(small_model_dir))
    model = loaded.model
    stride = int(0.75 * int(model.samplerate * model.segment))
    for target in (20.0, 60.0, 95.0):
        chunk = demucs_chunk_seconds(loaded, target, 1.0, overlap=0.25)
        window = int(chunk * model.samplerate) + int(1.0 * model.samplerate)
        assert abs(chunk - target) <= stride / model.samplerate
        assert -1 <= window - round(window / stride) * stride <= 0  # whole strides, never one sample over


def test_stems_heard_in_a_condition_line_up_with_the_degraded_mix(sine_stereo):
    """The references a separator is scored against in a room are the stems through the same room (same
    seed): they sum to the degraded mix up to its noise and limiter, sample for sample."""
    from pipeline_project.analysis.accuracy import si_sdr
    from pipeline_project.training.analysis_corpus import apply_condition, heard_stems

    tone, rate = sine_stereo
    rng = np.random.default_rng(0)
    clicks = np.zeros_like(tone)
    clicks[:, :: rate // 4] = 0.8  # a transient every quarter second: any time shift would show
    stems = {"drums": clicks, "other": tone}
    for condition, at_least_db in (("room", 60.0), ("reverb_noise", 15.0)):
        mix = apply_condition(sum(stems.values()), rate, condition, seed=3)
        heard = heard_stems(stems, rate, condition, seed=3)
        assert si_sdr(sum(heard.values()), mix) > at_least_db, condition
        assert si_sdr(heard["drums"], stems["drums"]) < 10  # the room is really in them
    assert heard_stems(stems, rate, "clean", seed=3) is stems
    estimate = tone + 0.1 * rng.standard_normal(tone.shape).astype(np.float32)
    assert abs(si_sdr(tone, 0.3 * estimate) - si_sdr(tone, estimate)) < 1e-6

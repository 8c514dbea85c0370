"""The blocking privacy audit as Dagster runs it: a snapshot is published only when its audit passes, and a failure
says which dataset, which check and what was found."""

import dagster as dg
import pandas as pd

from pipeline_project import cli
from pipeline_project.assets.datasets import song_features
from pipeline_project.checks import privacy_checks
from pipeline_project.datasets.snapshots import latest_manifest, pending_manifest, write_snapshot
from pipeline_project.definitions import default_resources


def _audit_song_features(data_root, instance):
    check = next(c for c in privacy_checks if song_features.key in {k.asset_key for k in c.check_keys})
    job = dg.define_asset_job("audit", selection=dg.AssetSelection.checks(check))
    defs = dg.Definitions(
        assets=[song_features], asset_checks=[check], jobs=[job], resources=default_resources(str(data_root))
    )
    return defs.resolve_job_def("audit").execute_in_process(instance=instance, raise_on_error=False)


def test_a_snapshot_that_fails_the_audit_is_never_published(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_K_ANONYMITY", "1")  # one-row tables: only the catalog terms are under test here
    (tmp_path / "incoming" / "Some Artist").mkdir(parents=True)
    (tmp_path / "incoming" / "Some Artist" / "City.mp3").write_bytes(b"not audio; only its name matters here")
    folder = tmp_path / "datasets" / "song_features"
    # "velocity" holds "city": only whole words count, so this snapshot passes and is published.
    clean = write_snapshot(
        pd.DataFrame({"feature": ["velocity_mean"], "tempo_bpm": [120]}), folder, "song_features", publish=False
    )
    assert latest_manifest(folder) is None
    with dg.instance_for_test() as instance:
        assert _audit_song_features(tmp_path, instance).success
        assert latest_manifest(folder)["snapshot_id"] == clean.snapshot_id and pending_manifest(folder) is None

        leaking = write_snapshot(
            pd.DataFrame({"feature": ["a city at night", "by some artist"], "tempo_bpm": [120, 90]}),
            folder,
            "song_features",
            publish=False,
        )
        result = _audit_song_features(tmp_path, instance)
        assert not result.success
        assert latest_manifest(folder)["snapshot_id"] == clean.snapshot_id  # consumers still read the clean one
        assert pending_manifest(folder)["snapshot_id"] == leaking.snapshot_id
        reason = cli._failure_reason(result)
        assert reason.startswith("song_features privacy_audit failed") and "private catalog term" in reason

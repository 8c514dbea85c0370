"""The settings object: every knob read once from the environment, wrong values named, defaults that work."""

import pytest

from pipeline_project.settings import PROJECT_ROOT, Settings


def test_defaults_work_offline_on_one_machine(tmp_path):
    settings = Settings.from_environment({"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.data_root == str((PROJECT_ROOT / "data").resolve())
    assert settings.secret_dir == str(tmp_path / "pipeline_project" / "keys")
    assert (settings.executor, settings.songs_per_run, settings.k_anonymity) == ("multiprocess", 25, 5)
    assert settings.mlflow_tracking_uri is None and not settings.anon_secret_set


def test_the_environment_and_the_cli_override_the_defaults(tmp_path):
    environ = {
        "PIPELINE_DATA_ROOT": "s3://bucket/prefix",
        "PIPELINE_SONGS_PER_RUN": "3",
        "PIPELINE_EXECUTOR": "celery",
        "PIPELINE_ANON_SECRET": "k" * 32,
        "PIPELINE_MLFLOW_RECORD_MACHINE": "1",
    }
    settings = Settings.from_environment(environ)
    assert settings.data_root == "s3://bucket/prefix" and settings.songs_per_run == 3
    assert settings.executor == "celery" and settings.anon_secret_set and settings.mlflow_record_machine
    assert Settings.from_environment(environ, data_root=tmp_path).data_root == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PIPELINE_SONGS_PER_RUN", "0", "PIPELINE_SONGS_PER_RUN=0 must be at least 1"),
        ("PIPELINE_K_ANONYMITY", "five", "PIPELINE_K_ANONYMITY='five' is not a whole number"),
        ("PIPELINE_EXECUTOR", "spark", "PIPELINE_EXECUTOR='spark' is not one of multiprocess, celery, k8s"),
        ("PIPELINE_DEMUCS_WEIGHTS", "sometimes", "is not one of auto, never, always"),
    ],
)
def test_a_value_that_cannot_be_right_is_named(name, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_environment({name: value})


def test_the_anonymization_key_reaches_the_storage_resource_as_an_env_var(monkeypatch, tmp_path):
    import dagster as dg

    from pipeline_project.definitions import default_resources

    monkeypatch.setenv("PIPELINE_ANON_SECRET", "s" * 32)
    storage = default_resources(str(tmp_path))["storage"]
    assert isinstance(storage.anon_secret, dg.EnvVar)  # resolved when a run starts, never shown in the UI
    assert storage.anon_secret.get_value() == "s" * 32

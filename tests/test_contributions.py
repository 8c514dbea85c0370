"""Community contributions end to end: real rendered hi-hats as the pool and as other users' submissions,
the review run a sensor requests, reports, deletion, and the stats."""

import json
import math

import dagster as dg
import pytest
from conftest import rendered_hits, with_privacy_checks

from pipeline_project import cli
from pipeline_project.assets.datasets import contributed_hits, contribution_stats
from pipeline_project.assets.training import drum_hit_classifier
from pipeline_project.datasets.contributions import export_submission, submission_id
from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot, write_snapshot
from pipeline_project.definitions import default_resources
from pipeline_project.sensors import contributions_sensor


def bad_submissions(good: dict) -> dict[str, tuple[str | bytes | dict, str]]:
    """name -> (content, a phrase its rejection must give)."""

    def variant(**changes):
        return json.loads(json.dumps(good)) | changes

    rows = good["features"]
    closed_only = [r for r in rows if r["OpenHH"] == 0]
    flipped = [{**r, "OpenHH": 1 - r["OpenHH"]} for r in rows]
    scaled = [{**{k: v * 100 for k, v in r.items() if k != "OpenHH"}, "OpenHH": r["OpenHH"]} for r in rows]
    out_of_range = [dict(r) for r in rows]
    for row in out_of_range[:3]:
        row["SustainMs"] = 50_000.0
    with_nan = [dict(r) for r in rows]
    with_nan[0]["BodyE"] = math.nan
    meta = good["metadata"]
    return {
        "10_malformed.json": ('{"version": "1.0", "features": [', "not valid JSON"),
        "11_wrong_version.json": (variant(version="0.9"), "version must be"),
        "12_missing_labels.json": (
            variant(features=[{k: v for k, v in r.items() if k != "OpenHH"} for r in rows]),
            "no OpenHH label",
        ),
        "13_one_class.json": (
            variant(features=closed_only, metadata=meta | {"sample_count": len(closed_only), "open_count": 0}),
            "only one class",
        ),
        "14_nan.json": (variant(features=with_nan), "NaN"),
        "15_out_of_range.json": (variant(features=out_of_range), "outside"),
        "16_unknown_genre.json": (variant(metadata=meta | {"genre": "polka-core"}), "genre"),
        "17_duplicate.json": (variant(), "duplicate of submission"),
        "18_flipped_labels.json": (
            variant(features=flipped, metadata=meta | {"open_count": len(rows) - meta["open_count"]}),
            "flipped labels",
        ),
        "19_scaled.json": (variant(features=scaled), "rescaled"),
        "20_empty.json": (variant(features=[], metadata=meta | {"sample_count": 0, "open_count": 0}), "non-empty"),
        "21_huge.json": (json.dumps(good) + " " * 50_000_000, "over the"),
        # What an attacker or a careless tool sends (the audit's findings): none may crash or pass the review.
        "22_deep.json": ("[" * 100_000 + "]" * 100_000, "nested"),
        "23_huge_number.json": (variant(features=[{**rows[0], "BodyE": 10**400}, *rows[1:]]), "characters"),
        "24_scaled_x3.json": (
            variant(
                features=[{**{k: v * 3 for k, v in r.items() if k != "OpenHH"}, "OpenHH": r["OpenHH"]} for r in rows]
            ),
            "SustainMs outside",
        ),
        "25_true_labels.json": (variant(features=[{**r, "OpenHH": bool(r["OpenHH"])} for r in rows]), "not true/false"),
        "26_text_labels.json": (variant(features=[{**r, "OpenHH": str(r["OpenHH"])} for r in rows]), "not true/false"),
        "27_text_numbers.json": (variant(features=[{**r, "BodyE": str(r["BodyE"])} for r in rows]), "not numbers"),
        "28_one_feature_edited.json": (
            variant(features=[{**r, "BodyE": r["BodyE"] * 3} for r in rows]),
            "geometric mean",
        ),
        "29_same_name.json": ('{"version": "1.0"', "not valid JSON"),
        "29_same_name.txt": ("not json either", "not valid JSON"),
        # First in the queue, before any submission is in the pool: judged against the local hits all the same.
        "000_flipped_first.json": (
            variant(features=flipped, metadata=meta | {"open_count": len(rows) - meta["open_count"]}),
            "flipped labels",
        ),
    }


@pytest.fixture(scope="module")
def hits():
    return {
        "local": rendered_hits(1),
        "alice": rendered_hits(2),
        "bob": rendered_hits(3, ("rock", "half_time", "disco")),
    }


def test_export_shows_a_review_before_writing_and_round_trips(hits, tmp_path, capsys, monkeypatch):
    submission, summary = export_submission(hits["alice"], "hihat", "rock")
    assert "open" in summary and "no audio" in summary
    assert submission["metadata"]["sample_count"] == len(submission["features"])
    assert set(submission["features"][0]) == {"BodyE", "SizzleE", "GeoMean", "SustainMs", "OpenHH"}
    data_root = tmp_path / "data"
    write_snapshot(hits["alice"], data_root / "datasets" / "drum_hits", "drum_hits")
    out = tmp_path / "mine.json"
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert (
        cli.main(["contributions", "--data-root", str(data_root), "export", "--genre", "rock", "--out", str(out)]) == 1
    )
    assert not out.exists() and "submission" in capsys.readouterr().out
    assert (
        cli.main(
            ["contributions", "--data-root", str(data_root), "export", "--genre", "rock", "--out", str(out), "--yes"]
        )
        == 0
    )
    assert submission_id(json.loads(out.read_text())) == submission_id(submission)


def test_the_sensor_reviews_submissions_rejects_each_bad_one_with_its_reason_and_deletion_removes_rows(
    hits, data_root, dagster_home, monkeypatch
):
    monkeypatch.setenv("PIPELINE_ANON_SECRET", "c" * 32)  # the key the seeded drum_hits were made with
    resources = default_resources(str(data_root))
    write_snapshot(hits["local"], data_root / "datasets" / "drum_hits", "drum_hits")
    incoming = data_root / "contributions" / "incoming"
    incoming.mkdir(parents=True)
    good_a, _ = export_submission(hits["alice"], "hihat", "rock")
    good_b, _ = export_submission(hits["bob"], "hihat", "funk")
    (incoming / "00_alice.json").write_text(json.dumps(good_a))
    # Fields the format does not define (a path, markup) are dropped from what is kept.
    (incoming / "01_bob.json").write_text(
        json.dumps(
            {
                **good_b,
                "comment": "<b>/home/bob/hats</b>",
                "features": [{**r, "source": "/home/bob/x.wav"} for r in good_b["features"]],
            }
        )
    )
    expected = bad_submissions(good_a)
    for name, (content, _) in expected.items():
        (incoming / name).write_text(content if isinstance(content, str) else json.dumps(content))
    # A link is judged as a link: its target (here a stand-in for the anonymization key) is never read.
    secret = data_root / "outside-secret.txt"
    secret.write_text("TOPSECRETKEYMATERIAL")
    (incoming / "40_link.json").symlink_to(secret)
    expected["40_link.json"] = (None, "symbolic link")

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"storage": resources["storage"]})
        assert len(contributions_sensor(context).run_requests) == 1
        result = dg.materialize(
            with_privacy_checks(contributed_hits, contribution_stats), resources=resources, instance=instance
        )
        assert result.success
        report_files = list((data_root / "contributions" / "reports").glob("*.json"))
        assert not any("TOPSECRET" in p.read_text() for p in report_files)
        reports = {r["file"]: r for r in (json.loads(p.read_text()) for p in report_files)}
        assert len(reports) == len(report_files) == len(expected) + 2  # 29_same_name.json and .txt: one report each
        assert reports["00_alice.json"]["accepted"] and reports["01_bob.json"]["accepted"]
        assert 0 < reports["00_alice.json"]["quality"]["score"] <= 1
        for name, (_, phrase) in expected.items():
            assert not reports[name]["accepted"], name
            assert any(phrase in reason for reason in reports[name]["reasons"]), (name, reports[name]["reasons"])
        assert not list(incoming.iterdir())
        assert len(list((data_root / "contributions" / "rejected").iterdir())) == len(expected)
        assert (
            data_root / "contributions" / "rejected" / "40_link.json"
        ).is_symlink() and secret.read_text().startswith("TOP")
        kept_bob = json.loads((data_root / "contributions" / "accepted" / f"{submission_id(good_b)}.json").read_text())
        assert kept_bob == good_b  # canonical: the unknown fields are gone
        pool = read_snapshot(data_root / "datasets" / "contributed_hits")
        assert len(pool) == len(good_a["features"]) + len(good_b["features"])
        assert pool.groupby("group_id")["split"].nunique().max() == 1
        stats = json.loads((data_root / "contributions" / "stats.json").read_text())
        assert stats["contributions"] == {"accepted": 2, "rejected": len(expected), "deleted": 0}
        assert stats["samples_per_genre"] == {"funk": len(good_b["features"]), "rock": len(good_a["features"])}

        alice = submission_id(good_a)
        assert cli.main(["contributions", "--data-root", str(data_root), "delete", alice]) == 0
        assert dg.materialize(with_privacy_checks(contributed_hits), resources=resources, instance=instance).success
        manifest = latest_manifest(data_root / "datasets" / "contributed_hits")
        assert manifest["removed_contributions"] == [alice] and manifest["added_contributions"] == []
        assert alice not in manifest["sources"]["contributions"]
        assert len(read_snapshot(data_root / "datasets" / "contributed_hits")) == len(good_b["features"])

        # The drum-hit classifier's hi-hat rules learn from the pool: a changed pool is new data for it.
        trained = []
        for change in ("first", "same pool", "bob deleted"):
            if change == "bob deleted":
                assert cli.main(["contributions", "--data-root", str(data_root), "delete", submission_id(good_b)]) == 0
                assert dg.materialize(
                    with_privacy_checks(contributed_hits), resources=resources, instance=instance
                ).success
            result = dg.materialize([drum_hit_classifier], resources=resources, instance=instance)
            trained.append(result.asset_materializations_for_node("drum_hit_classifier")[0].metadata["trained"].value)
        assert trained == [True, False, True]

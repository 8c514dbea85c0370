import dagster as dg

from pipeline_project.assets.datasets import drum_hits
from pipeline_project.datasets.snapshots import latest_manifest, read_snapshot
from pipeline_project.resources import MlflowResource, StorageResource
from pipeline_project.training.drum_classifier import evaluate, feature_matrix, train
from pipeline_project.training.hihat_rules import CLOSED, OPEN, derive_rules, scores

DRUM_MODEL_NAME = "drum_hit_classifier"


class DrumTrainingConfig(dg.Config):
    seed: int = 7
    n_estimators: int = 200
    # The new version takes `champion` only when its test macro F1 is at least the champion's plus this.
    minimum_gain: float = 0.0


@dg.asset(group_name="training", kinds={"scikitlearn", "mlflow"}, code_version="1", deps=[drum_hits])
def drum_hit_classifier(context: dg.AssetExecutionContext, config: DrumTrainingConfig, storage: StorageResource,
                        mlflow: MlflowResource) -> dg.MaterializeResult:
    """A random-forest drum-hit classifier trained on the `drum_hits` train split, scored on its test split,
    logged to MLflow and registered as a new version; `champion` moves to it only if it scores at least as
    well as the current champion on the same test split, otherwise it becomes `challenger`."""
    dataset_dir = storage.dataset_dir("drum_hits")
    manifest = latest_manifest(dataset_dir)
    if manifest is None:
        raise dg.Failure(description="drum_hits has no snapshot yet: materialize it first")
    table = read_snapshot(dataset_dir, manifest["snapshot_id"])
    train_rows, test_rows = table[table["split"] == "train"], table[table["split"] == "test"]
    if train_rows.empty or test_rows.empty:
        raise dg.Failure(description=f"drum_hits snapshot {manifest['snapshot_id']} has {len(train_rows)} train and "
                                     f"{len(test_rows)} test rows; both splits need rows to train and compare models")
    model = train(train_rows, config.seed, config.n_estimators)
    evaluation = evaluate(model, test_rows)
    rules = hihat_rule_presets(train_rows, test_rows)
    if not rules:
        context.log.warning("the train split has no open and closed hi-hat hits: no hi-hat threshold rules this time")
    registry = mlflow.registry()
    tags = {
        "dataset": "drum_hits",
        "dataset_snapshot": manifest["snapshot_id"],
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "code_version": context.assets_def.code_versions_by_key[context.asset_key] or "",
    }
    result = registry.log_and_register(
        model=model, model_name=DRUM_MODEL_NAME, experiment=mlflow.experiment,
        params={"seed": config.seed, "n_estimators": config.n_estimators, "train_rows": len(train_rows),
                "classes": ",".join(sorted(train_rows["label"].unique()))},
        metrics=evaluation.metrics(), tags=tags, input_example=feature_matrix(test_rows.head(5)),
        score=evaluation.macro_f1, score_champion=lambda champion: evaluate(champion, test_rows).macro_f1,
        minimum_gain=config.minimum_gain, json_artifacts={"hihat_rules.json": rules} if rules else None,
    )
    verdict = "promoted to champion" if result.promoted else f"kept as challenger (champion scores {result.champion_score_before})"
    context.log.info(f"{DRUM_MODEL_NAME} version {result.version}: test macro F1 {evaluation.macro_f1}, {verdict}")
    return dg.MaterializeResult(metadata={
        "model_name": DRUM_MODEL_NAME,
        "model_version": result.version,
        "alias": result.alias,
        "test_macro_f1": evaluation.macro_f1,
        "test_accuracy": evaluation.accuracy,
        "champion_macro_f1_before": result.champion_score_before if result.champion_score_before is not None else "none",
        "mlflow_run_id": result.run_id,
        "mlflow_tracking_uri": registry.tracking_uri,
        "dataset_snapshot": manifest["snapshot_id"],
        "per_class": dg.MetadataValue.json(evaluation.per_class),
        "hihat_rules": dg.MetadataValue.md(
            "\n".join(f"- **{name}**: {r['rule']} " + (f"(test balanced accuracy {r['test']['balanced_accuracy']}, open F1 "
                                                        f"{r['test']['f1_open']})" if r["test"] else "(no open and closed hits in the test split)")
                      for name, r in rules.items()) or "none"),
    })


def hihat_rule_presets(train_rows, test_rows) -> dict:
    """The simple, balanced and robust open/closed hi-hat rules from the train split, scored on the test split
    when it holds both kinds of hit."""
    if not set(train_rows["label"]) >= {OPEN, CLOSED}:
        return {}
    rules = derive_rules(train_rows, group_column="group_id")
    testable = set(test_rows["label"]) >= {OPEN, CLOSED}
    is_open = (test_rows["label"] == OPEN).to_numpy()
    return {name: {**rule.to_dict(), "test": scores(rule.predict_open(test_rows), is_open) if testable else None}
            for name, rule in rules.items()}

"""Declarative automation for the models: retrain when a dataset has grown enough since the champion was
trained, beside the weekly schedule."""

import dagster as dg

DEFAULT_GROWTH = 0.10
NEW_LABELS = 10  # people's labels since the champion that retrain a model (the labeling page's queues)


class DatasetGrewSinceChampion(dg.AutomationCondition):
    """True when `dataset`'s latest snapshot has at least (1 + growth) times the rows of the snapshot the
    model's champion was trained on (the model asset records that as `champion_dataset_rows`). A model never
    materialized, or with no champion yet, is left to the schedule and to explicit runs."""

    def __init__(self, dataset: dg.AssetKey, growth: float = DEFAULT_GROWTH):
        self.dataset = dataset
        self.growth = growth

    @property
    def description(self) -> str:
        return f"{self.dataset.to_user_string()} grew by {self.growth:.0%} since the champion was trained"

    @property
    def name(self) -> str:
        return "dataset_grew_since_champion"

    def evaluate(self, context):
        instance = context.asset_graph_view.instance
        grown = False
        dataset_event = instance.get_latest_materialization_event(self.dataset)
        model_event = instance.get_latest_materialization_event(context.key)
        if dataset_event is not None and model_event is not None:
            rows = dataset_event.asset_materialization.metadata.get("rows")
            trained = model_event.asset_materialization.metadata.get("champion_dataset_rows")
            if rows is not None and trained is not None and isinstance(trained.value, int) and trained.value > 0:
                grown = rows.value >= (1 + self.growth) * trained.value
        return dg.AutomationResult(context, context.candidate_subset if grown else context.get_empty_subset())


class PeopleLabelledSinceChampion(dg.AutomationCondition):
    """True when `labels` (the `human_labels` release) holds at least `minimum` more labels of `queue` than the
    model's champion was trained with (the model asset records that as `champion_human_labels`)."""

    def __init__(self, labels: dg.AssetKey, queue: str, minimum: int = NEW_LABELS):
        self.labels = labels
        self.queue = queue
        self.minimum = minimum

    @property
    def description(self) -> str:
        return f"{self.minimum} new {self.queue} labels from people since the champion was trained"

    @property
    def name(self) -> str:
        return "people_labelled_since_champion"

    def evaluate(self, context):
        instance = context.asset_graph_view.instance
        labels_event = instance.get_latest_materialization_event(self.labels)
        model_event = instance.get_latest_materialization_event(context.key)
        more = False
        if labels_event is not None and model_event is not None:
            given = labels_event.asset_materialization.metadata.get(f"labels_{self.queue}")
            seen = model_event.asset_materialization.metadata.get("champion_human_labels")
            seen_count = seen.value if seen is not None and isinstance(seen.value, int) else 0
            more = given is not None and given.value - seen_count >= self.minimum
        return dg.AutomationResult(context, context.candidate_subset if more else context.get_empty_subset())


def once_deps_updated() -> dg.AutomationCondition:
    """Once per update of any dependency, when none of them and not the asset itself is being materialized."""
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )


def retrain_when_grown(
    dataset: dg.AssetsDefinition,
    growth: float = DEFAULT_GROWTH,
    people: tuple[dg.AssetsDefinition, str] | None = None,
) -> dg.AutomationCondition:
    """Retrain once per dataset update that leaves the dataset `growth` larger than the champion's data, or, with
    `people` (the labels release and a queue), once NEW_LABELS more labels of that queue have been given."""
    grown = DatasetGrewSinceChampion(dataset.key, growth)
    label = f"{dataset.key.to_user_string()} grew {growth:.0%} since the champion"
    if people is not None:
        grown = grown | PeopleLabelledSinceChampion(people[0].key, people[1])
        label += f", or {NEW_LABELS} new {people[1]} labels"
    return (grown & once_deps_updated()).with_label(label)

"""The collection as a training set: its settings (quality thresholds, target shares), the grades decided
across songs (near-duplicates), the report, and the private training export. Plain Python, no Dagster."""

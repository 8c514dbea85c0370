"""The drum-hit classifier: per-hit features in, drum class (kick, snare, closed/open/pedal hi-hat, ...) out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline_project.analysis.drum_hits import FEATURE_NAMES

LABEL_COLUMN = "label"
GROUP_COLUMN = "group_id"
RELATIVE_FEATURES = ("SustainMs", "SizzleE", "BodyE", "centroid_hz", "decay_db_per_s", "flatness")


@dataclass
class Evaluation:
    macro_f1: float
    accuracy: float
    per_class: dict[str, dict[str, float]]
    test_rows: int

    def metrics(self) -> dict[str, float]:
        flat = {"macro_f1": self.macro_f1, "accuracy": self.accuracy, "test_rows": float(self.test_rows)}
        for label, scores in self.per_class.items():
            for name, value in scores.items():
                flat[f"{name}_{label}"] = value
        return flat


def feature_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Model input: the feature columns, log-compressed where they span orders of magnitude, and each of
    RELATIVE_FEATURES also measured against the other hits of its song (`GROUP_COLUMN`; the whole table when
    there is none): how many standard deviations from the song's median. Kits differ in how long and how
    bright every hit is, but within one kit an open hi-hat rings longer and brighter than a closed one."""
    features = table[list(FEATURE_NAMES)].astype("float64").copy()
    for column in ("BodyE", "SizzleE", "GeoMean", "low_energy"):
        features[column] = np.log10(features[column].clip(lower=0) + 1e-6)
    groups = table[GROUP_COLUMN] if GROUP_COLUMN in table else pd.Series(0, index=table.index)
    for column in RELATIVE_FEATURES:
        by_song = features[column].groupby(groups, observed=True)
        spread = by_song.transform("std").fillna(0.0)
        features[f"{column}_in_song"] = (features[column] - by_song.transform("median")) / (spread + 1e-9)
    return features


def _forest(seed: int, n_estimators: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=1)


def train(table: pd.DataFrame, seed: int, n_estimators: int = 200):
    return _forest(seed, n_estimators).fit(feature_matrix(table), table[LABEL_COLUMN])


def out_of_fold_probabilities(
    features: pd.DataFrame,
    labels: pd.Series,
    groups: pd.Series,
    classes,
    seed: int,
    folds: int = 3,
    n_estimators: int = 50,
) -> np.ndarray | None:
    """Each row's class probabilities (columns in `classes` order) from a forest that never saw its song: `folds`
    forests, each trained on the other songs' rows. A forest is sure of the rows it trained on, so this is how
    unsure a model really is about them. None with fewer songs than folds."""
    from sklearn.model_selection import GroupKFold

    if groups.nunique() < folds:
        return None
    column = {label: index for index, label in enumerate(classes)}
    out = np.zeros((len(features), len(column)))
    for fit, held in GroupKFold(n_splits=folds).split(features, labels, groups):
        forest = _forest(seed, n_estimators).fit(features.iloc[fit], labels.iloc[fit])
        probabilities = forest.predict_proba(features.iloc[held])
        for index, label in enumerate(forest.classes_):
            if label in column:
                out[held, column[label]] = probabilities[:, index]
    return out


def evaluate(model, table: pd.DataFrame) -> Evaluation:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    truth = table[LABEL_COLUMN]
    predicted = model.predict(feature_matrix(table))
    labels = sorted(set(truth))
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    per_class = {
        label: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4)}
        for label, p, r, f in zip(labels, precision, recall, f1)
    }
    return Evaluation(
        macro_f1=round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
        accuracy=round(float(accuracy_score(truth, predicted)), 4),
        per_class=per_class,
        test_rows=len(table),
    )

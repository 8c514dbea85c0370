"""The genre classifier: a song's analysis and theory statistics (`song_features`) in, its genre out. The
labels are weak: the genre tags users gave their files, folded onto a fixed list; songs tagged "other" or
untagged do not train it, nor those whose genre the release generalized away."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline_project.datasets.tables import SONG_FEATURE_COLUMNS

LABEL_COLUMN = "genre"
UNLABELLED = "other"
# Every numeric column of `song_features`, in its order.
NUMERIC_FEATURES = tuple(
    column
    for column in SONG_FEATURE_COLUMNS
    if column not in ("song_id", "split", "genre", "key_tonic", "key_mode", "duration_bucket", "separator")
)
MIN_TRAIN_PER_GENRE = 2
MIN_TEST_SONGS = 2


@dataclass
class GenreEvaluation:
    macro_f1: float
    accuracy: float
    labels: list[str]
    confusion: list[list[int]]  # rows: true genre, columns: predicted, in `labels` order
    per_class: dict[str, dict[str, float]]
    test_rows: int

    def metrics(self) -> dict[str, float]:
        flat = {"macro_f1": self.macro_f1, "accuracy": self.accuracy, "test_rows": float(self.test_rows)}
        for label, scores in self.per_class.items():
            flat.update({f"{name}_{label}": value for name, value in scores.items()})
        return flat


GENERALIZED = "*"  # a genre the release hid because the song's group mixed genres (datasets.anonymize)


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table[LABEL_COLUMN].astype(str).isin([UNLABELLED, GENERALIZED])]


def feature_matrix(table: pd.DataFrame) -> pd.DataFrame:
    features = table[list(NUMERIC_FEATURES)].astype("float64").copy()
    features["minor_key"] = (table["key_mode"].astype(str) == "minor").astype("float64")
    return features


def evaluation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a model is scored on: the test split, joined by the validation split when the test split holds
    fewer than MIN_TEST_SONGS tagged songs (a small collection's 15 % may be one song). Neither was trained on."""
    test = table[table["split"] == "test"]
    if len(labelled(test)) >= MIN_TEST_SONGS:
        return test
    return table[table["split"].isin(["test", "validation"])]


def why_not_trainable(train_rows: pd.DataFrame, test_rows: pd.DataFrame) -> str | None:
    """None when the splits can train and score a genre classifier, else the reason in words."""
    counts = labelled(train_rows)[LABEL_COLUMN].astype(str).value_counts()
    usable = counts[counts >= MIN_TRAIN_PER_GENRE]
    if len(usable) < 2:
        return (
            f"the train split has {len(usable)} genre(s) with at least {MIN_TRAIN_PER_GENRE} tagged songs "
            f"({ {genre: int(n) for genre, n in counts.items()} or 'no tagged songs' }); a classifier needs two"
        )
    if labelled(test_rows).empty:
        return "the test and validation splits have no tagged songs to score a classifier on"
    return None


def train(table: pd.DataFrame, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = labelled(table)
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    )
    model.fit(feature_matrix(rows), rows[LABEL_COLUMN].astype(str))
    return model


def evaluate(model, table: pd.DataFrame) -> GenreEvaluation:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rows = labelled(table)
    truth = rows[LABEL_COLUMN].astype(str)
    predicted = model.predict(feature_matrix(rows))
    labels = sorted(set(truth) | set(predicted))
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    return GenreEvaluation(
        macro_f1=round(
            float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0)), 4
        ),
        accuracy=round(float(accuracy_score(truth, predicted)), 4),
        labels=labels,
        confusion=confusion_matrix(truth, predicted, labels=labels).tolist(),
        per_class={
            label: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4)}
            for label, p, r, f in zip(labels, precision, recall, f1)
        },
        test_rows=len(rows),
    )


def confusion_png(evaluation: GenreEvaluation) -> bytes:
    """The confusion matrix as a PNG: true genres down, predicted across, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matrix = np.array(evaluation.confusion)
    size = 1.2 + 0.55 * len(evaluation.labels)
    figure, axes = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(evaluation.labels)), evaluation.labels, rotation=45, ha="right")
    axes.set_yticks(range(len(evaluation.labels)), evaluation.labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("tag")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(
            column, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black"
        )
    axes.set_title(f"genre, test split: macro F1 {evaluation.macro_f1:.2f}")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()

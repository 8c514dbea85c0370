"""Open versus closed hi-hat as readable threshold rules, derived from labelled hits by a local optimizer.

Three presets, each a conjunction of at most two thresholds ("open when SustainMs >= 120 and SizzleE >= 40"):
  simple    one feature, one threshold, the most accurate on the training hits;
  balanced  up to two features, maximizing balanced accuracy (the mean of both classes' recall), so a rare
            open hi-hat counts as much as the many closed ones;
  robust    up to two features, maximizing the worst group's balanced accuracy (groups such as SoundFonts or
            source pieces), each threshold then moved to the middle of the range that scores the same, so it
            keeps the widest margin to the hits on either side.
Thresholds on energy features are searched in log10, where they are spread evenly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

OPEN, CLOSED = "open_hihat", "closed_hihat"
RULE_FEATURES = (
    "SustainMs",
    "SizzleE",
    "GeoMean",
    "BodyE",
    "decay_db_per_s",
    "centroid_hz",
    "flatness",
    "bandwidth_hz",
)
LOG_FEATURES = {"SizzleE", "GeoMean", "BodyE"}
MAX_CANDIDATES = 64  # thresholds tried per feature: quantile midpoints


@dataclass
class Condition:
    feature: str
    op: str  # ">=" or "<="
    threshold: float

    def holds(self, table: pd.DataFrame) -> np.ndarray:
        values = table[self.feature].to_numpy(dtype=float)
        return values >= self.threshold if self.op == ">=" else values <= self.threshold


@dataclass
class HiHatRule:
    preset: str
    conditions: list[Condition]
    training: dict[str, float] = field(default_factory=dict)

    def predict_open(self, table: pd.DataFrame) -> np.ndarray:
        result = np.ones(len(table), dtype=bool)
        for condition in self.conditions:
            result &= condition.holds(table)
        return result

    def describe(self) -> str:
        return "open when " + " and ".join(f"{c.feature} {c.op} {c.threshold:g}" for c in self.conditions)

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "rule": self.describe(),
            "conditions": [asdict(c) for c in self.conditions],
            "training": self.training,
        }


def scores(predicted_open: np.ndarray, is_open: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(predicted_open & is_open))
    fp = float(np.sum(predicted_open & ~is_open))
    fn = float(np.sum(~predicted_open & is_open))
    tn = float(np.sum(~predicted_open & ~is_open))
    recall_open = tp / max(tp + fn, 1.0)
    recall_closed = tn / max(tn + fp, 1.0)
    precision = tp / max(tp + fp, 1.0)
    return {
        "accuracy": round((tp + tn) / max(len(is_open), 1), 4),
        "balanced_accuracy": round((recall_open + recall_closed) / 2, 4),
        "f1_open": round(2 * precision * recall_open / max(precision + recall_open, 1e-12), 4),
        "hits": int(len(is_open)),
    }


def _scale(feature: str, values: np.ndarray) -> np.ndarray:
    return np.log10(np.clip(values, 1e-9, None)) if feature in LOG_FEATURES else values


def _unscale(feature: str, value: float) -> float:
    return float(10**value) if feature in LOG_FEATURES else float(value)


def _candidates(values: np.ndarray) -> np.ndarray:
    unique = np.unique(values)
    if len(unique) < 2:
        return unique
    midpoints = (unique[1:] + unique[:-1]) / 2
    if len(midpoints) > MAX_CANDIDATES:
        midpoints = np.quantile(midpoints, np.linspace(0, 1, MAX_CANDIDATES))
    return midpoints


def _objective(name: str, predicted: np.ndarray, is_open: np.ndarray, groups: np.ndarray) -> float:
    if name == "accuracy":
        return float(np.mean(predicted == is_open))
    if name == "balanced":
        return scores(predicted, is_open)["balanced_accuracy"]
    worst = 1.0
    for group in np.unique(groups):
        members = groups == group
        if is_open[members].any() and (~is_open[members]).any():
            worst = min(worst, scores(predicted[members], is_open[members])["balanced_accuracy"])
    return worst


def _rule_score(
    table: pd.DataFrame, is_open: np.ndarray, groups: np.ndarray, objective: str, conditions: list
) -> float:
    """The objective of a conjunction of (feature, op, threshold in search scale) conditions."""
    predicted = np.ones(len(table), dtype=bool)
    for feature, op, threshold in conditions:
        values = _scale(feature, table[feature].to_numpy(dtype=float))
        predicted &= values >= threshold if op == ">=" else values <= threshold
    return _objective(objective, predicted, is_open, groups)


def _best_single(
    table: pd.DataFrame, is_open: np.ndarray, groups: np.ndarray, objective: str, features
) -> tuple[float, list]:
    best = (-1.0, [])
    for feature in features:
        values = _scale(feature, table[feature].to_numpy(dtype=float))
        for op in (">=", "<="):
            for threshold in _candidates(values):
                predicted = values >= threshold if op == ">=" else values <= threshold
                score = _objective(objective, predicted, is_open, groups)
                if score > best[0] + 1e-12:
                    best = (score, [(feature, op, float(threshold))])
    return best


def _local_search(
    table: pd.DataFrame, is_open: np.ndarray, groups: np.ndarray, objective: str, start: list
) -> tuple[float, list]:
    """Coordinate ascent over a second condition added to the best single one, then over each threshold."""

    def evaluate(conditions: list) -> float:
        return _rule_score(table, is_open, groups, objective, conditions)

    best_score, best = evaluate(start), list(start)
    for feature in RULE_FEATURES:
        if feature == start[0][0]:
            continue
        values = _scale(feature, table[feature].to_numpy(dtype=float))
        for op in (">=", "<="):
            for threshold in _candidates(values):
                trial = start + [(feature, op, float(threshold))]
                score = evaluate(trial)
                if score > best_score + 1e-9:  # a second condition must earn its place
                    best_score, best = score, trial
    improved = True
    while improved:
        improved = False
        for index, (feature, op, _) in enumerate(best):
            values = _scale(feature, table[feature].to_numpy(dtype=float))
            for threshold in _candidates(values):
                trial = list(best)
                trial[index] = (feature, op, float(threshold))
                score = evaluate(trial)
                if score > best_score + 1e-9:
                    best_score, best, improved = score, trial, True
    return best_score, best


def _widest_margin(
    table: pd.DataFrame, is_open: np.ndarray, groups: np.ndarray, objective: str, conditions: list
) -> list:
    """Each threshold moved to the middle of the interval of thresholds that keep the same score."""

    def evaluate(conditions: list) -> float:
        return _rule_score(table, is_open, groups, objective, conditions)

    target = evaluate(conditions)
    centred = list(conditions)
    for index, (feature, op, threshold) in enumerate(conditions):
        values = np.unique(_scale(feature, table[feature].to_numpy(dtype=float)))
        below, above = values[values < threshold], values[values >= threshold]
        low = below[-1] if below.size else threshold
        high = above[0] if above.size else threshold
        # Widen while the score holds, one hit at a time on each side.
        while (
            below.size > 1
            and evaluate(centred[:index] + [(feature, op, float(below[-2] + below[-1]) / 2)] + centred[index + 1 :])
            >= target - 1e-12
        ):
            below = below[:-1]
            low = below[-1]
        while (
            above.size > 1
            and evaluate(centred[:index] + [(feature, op, float(above[0] + above[1]) / 2)] + centred[index + 1 :])
            >= target - 1e-12
        ):
            above = above[1:]
            high = above[0]
        centred[index] = (feature, op, float((low + high) / 2))
    return centred


def derive_rules(table: pd.DataFrame, group_column: str | None = None) -> dict[str, HiHatRule]:
    """The three presets from hits labelled open_hihat or closed_hihat (other labels are ignored)."""
    hits = table[table["label"].isin([OPEN, CLOSED])].reset_index(drop=True)
    is_open = (hits["label"] == OPEN).to_numpy()
    if is_open.all() or not is_open.any():
        raise ValueError("hi-hat rules need both open and closed hi-hat hits")
    groups = hits[group_column].to_numpy() if group_column else np.zeros(len(hits))
    rules = {}
    for preset, objective, two_features in (
        ("simple", "accuracy", False),
        ("balanced", "balanced", True),
        ("robust", "worst_group", True),
    ):
        _, conditions = _best_single(hits, is_open, groups, objective, RULE_FEATURES)
        if two_features:
            _, conditions = _local_search(hits, is_open, groups, objective, conditions)
        if preset == "robust":
            conditions = _widest_margin(hits, is_open, groups, objective, conditions)
        rule = HiHatRule(preset, [Condition(f, op, round(_unscale(f, t), 4)) for f, op, t in conditions])
        rule.training = scores(rule.predict_open(hits), is_open)
        rules[preset] = rule
    return rules

"""The linkage attack a released table must resist, as code: the attacker has the released dataset, this project's
code and their own copies of some of the songs. They compute each copy's row exactly as the pipeline does and
look for it among the released rows, matching on every released column.

`linkage_rate` scores that attack: for each of the attacker's songs, the released rows nearest its recomputed row
(equal categorical values, or generalized "*"; z-scored distance on the numbers) are the candidates, and the
attack is credited 1 / (number of candidates) when the song's own row is among them, else nothing. A table whose
every row is identical to k - 1 others holds that to at most 1 / k per song; an exact release gives 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GENERALIZED = "*"


def linkage_rate(
    released: pd.DataFrame,
    recomputed: pd.DataFrame,
    truth: dict[str, str],
    id_column: str,
    categorical: list[str],
    numeric: list[str],
) -> float:
    """Expected share of the attacker's songs linked to their own released row. `recomputed`: the attacker's rows
    (same columns, exact values, their own ids in `id_column`); `truth`: attacker id -> released id, used only
    to score the attack."""
    if released.empty or recomputed.empty:
        return 0.0
    values = released[numeric].to_numpy(dtype=float)
    centre, spread = values.mean(axis=0), np.maximum(values.std(axis=0), 1e-9)
    scaled = (values - centre) / spread
    credits = []
    for _, row in recomputed.iterrows():
        agrees = np.ones(len(released), dtype=bool)
        for column in categorical:
            shown = released[column].astype(str).to_numpy()
            agrees &= (shown == str(row[column])) | (shown == GENERALIZED)
        distance = np.linalg.norm(scaled - (row[numeric].to_numpy(dtype=float) - centre) / spread, axis=1)
        distance[~agrees] = np.inf
        if not np.isfinite(distance).any():
            credits.append(0.0)
            continue
        candidates = released[id_column].to_numpy()[distance <= distance.min() + 1e-9]
        own = truth.get(row[id_column])
        credits.append(1.0 / len(candidates) if own in set(candidates) else 0.0)
    return float(np.mean(credits))

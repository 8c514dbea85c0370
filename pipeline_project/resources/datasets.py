"""Dataset settings: how many snapshots to keep, the k of k-anonymity, and limits on contributions."""

from __future__ import annotations

import dagster as dg


class DatasetsResource(dg.ConfigurableResource):
    """snapshots_to_keep: snapshots kept per dataset (older ones are deleted; the latest never is).
    k_anonymity: every released row of `song_features` is identical to at least k - 1 others on every column but
    its keyed id and split (microaggregation within genre; see `datasets.anonymize.microaggregate`).
    contribution_max_bytes: larger submission files are rejected unread.
    """

    snapshots_to_keep: int = 5
    k_anonymity: int = 5
    contribution_max_bytes: int = 1_000_000

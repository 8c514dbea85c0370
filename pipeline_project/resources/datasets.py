"""Dataset settings: how many snapshots to keep, the k of k-anonymity, and limits on contributions."""

from __future__ import annotations

import dagster as dg


class DatasetsResource(dg.ConfigurableResource):
    """snapshots_to_keep: snapshots kept per dataset (older ones are deleted; the latest never is).
    k_anonymity: every combination of the quasi-identifiers (tempo, key, duration bucket, genre) in
    `song_features` must be shared by at least this many rows; rarer rows are coarsened, then suppressed.
    contribution_max_bytes: larger submission files are rejected unread.
    """

    snapshots_to_keep: int = 5
    k_anonymity: int = 5
    contribution_max_bytes: int = 1_000_000

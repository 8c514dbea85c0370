import dagster as dg


class SongRunsResource(dg.ConfigurableResource):
    """How new songs are batched into runs: a drop of more than `songs_per_run` songs (a backfill) runs that
    many songs to a run; a smaller drop gets a run per song (see `planning`)."""

    songs_per_run: int = 25

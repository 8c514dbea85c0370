"""Retries with backoff for transient failures only (see `pipeline_project.retries`): an asset or op wrapped
here asks Dagster for another attempt after 2, 4, 8 and 16 s when storage or a server failed in passing, and
fails at once on anything else. Bad input also raises `dg.Failure(allow_retries=False)`."""

from __future__ import annotations

import functools

import dagster as dg

from pipeline_project.retries import MAX_RETRIES, backoff_seconds, is_transient


def retry_transient_failures(compute):
    @functools.wraps(compute)
    def attempt(context, *args, **kwargs):
        try:
            return compute(context, *args, **kwargs)
        except Exception as error:
            if not is_transient(error):
                raise
            retry_number = context.retry_number
            wait = backoff_seconds(retry_number)
            if retry_number < MAX_RETRIES:
                context.log.warning(
                    f"transient failure, retry {retry_number + 1} of {MAX_RETRIES} in {wait:.0f} s: "
                    f"{type(error).__name__}: {error}"
                )
            raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from error

    return attempt

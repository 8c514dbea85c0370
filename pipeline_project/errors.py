"""One exception type per failure family; each message names the file (or item) and the reason."""


class PipelineError(Exception):
    """Base class for errors raised by the domain code."""


class BadAudioError(PipelineError):
    """A song file that cannot be used: empty, undecodable, truncated, silent or too short."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SeparatorUnavailableError(PipelineError):
    """No Demucs weights could be loaded and the signal-processing fallback is disabled."""


class RenderError(PipelineError):
    """FluidSynth could not render a score (missing library, SoundFont or instrument)."""

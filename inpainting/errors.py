"""Errors caused by what a user gave (files, flags, checkpoints); each message is one line.

The command-line tools print them as `error: <message>` and exit with status 1, without a traceback.
"""


class InpaintingError(ValueError):
    """Base class of the errors a user can fix: the message says what is wrong and what to do."""


class ConfigError(InpaintingError):
    """A model configuration that is invalid or cannot be read."""


class CheckpointError(InpaintingError):
    """A checkpoint that cannot be found, read, or does not hold the expected network."""


class ImageError(InpaintingError):
    """A problem with an input or output image file."""


class DataError(InpaintingError):
    """A training or validation data source that cannot be found, read or used."""


class TrainingError(InpaintingError):
    """A training run that cannot start or continue (bad flags, non-finite loss, ...)."""


class ExportError(InpaintingError):
    """A model that cannot be exported as asked (existing version, an op TFLite lacks, ...)."""

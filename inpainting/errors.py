"""Errors caused by what a user gave (files, arguments, checkpoints); each message is one line.

The library names its own parameters in these messages (`version must be positive`); the
command-line tools print them with flag names instead (`error: --version must be positive`) and exit
with status 1, without a traceback (`inpainting.cli.user_errors`).
"""

import re

PLACEHOLDER = "{parameter}"
# Another parameter a message mentions besides the one it concerns: `{parameter:NAME}`.
MENTION = re.compile(r"\{parameter:(\w+)\}")


def mention(parameter):
    """The placeholder of another parameter a message names: `{parameter:<parameter>}`.

    Example:
        >>> str(ConfigError(f"{{parameter}} does not fit in {mention('image_size')} 64", "box_size"))
        'box_size does not fit in image_size 64'
    """
    return "{parameter:" + parameter + "}"


class InpaintingError(ValueError):
    """Base class of the errors a user can fix: the message says what is wrong and what to do.

    Args:
        message: one line. Where it names the parameter the caller got wrong, it says `{parameter}`
            (literally); another parameter it mentions, `{parameter:NAME}` (see `mention`). No
            other braces are interpreted.
        parameter: the name of that parameter, as the raising function spells it. The command-line
            tools name it as the flag `--<parameter>` (or the flag a tool maps it to).

    Example:
        >>> err = ExportError("{parameter} must be a positive integer, got 0", parameter="version")
        >>> str(err)
        'version must be a positive integer, got 0'
        >>> err.describe(flags=True)
        '--version must be a positive integer, got 0'
    """

    def __init__(self, message, parameter=None):
        self.template = message
        self.parameter = parameter
        super().__init__(self.describe())

    def describe(self, flags=False, flag_names=None):
        """The message, naming the parameter as the library spells it or, with `flags`, as a flag.

        Args:
            flags: name the parameter `--<flag>` instead of `<parameter>`.
            flag_names: {parameter: flag name} where a tool's flag is not named like the parameter.
        """
        def spell(name):
            return "--" + (flag_names or {}).get(name, name) if flags else name

        text = self.template
        if self.parameter is not None:
            text = text.replace(PLACEHOLDER, spell(self.parameter))
        return MENTION.sub(lambda match: spell(match.group(1)), text)


class ConfigError(InpaintingError):
    """A model configuration that is invalid or cannot be read."""


class CheckpointError(InpaintingError):
    """A checkpoint that cannot be found, read, or does not hold the expected network."""


class ImageError(InpaintingError):
    """A problem with an input or output image file."""


class DataError(InpaintingError):
    """A training or validation data source that cannot be found, read or used."""


class TrainingError(InpaintingError):
    """A training run that cannot start or continue (bad arguments, non-finite loss, ...)."""


class ExportError(InpaintingError):
    """A model that cannot be exported as asked (existing version, an op TFLite lacks, ...)."""

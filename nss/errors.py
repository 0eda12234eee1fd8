"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class NSSError(Exception):
    """Bad input or a run that cannot go on; the message names what is wrong."""


class DataError(NSSError):
    """A data folder, file or synthetic-data request that cannot be used."""


class NonFiniteLossError(NSSError):
    """A loss became NaN or Inf; the last good checkpoint is left as it was."""

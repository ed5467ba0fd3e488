"""The one exception every stage raises for bad input, so the CLI can print it as a one-line message."""


class DataError(ValueError):
    """Bad input data; the message names the file and the problem."""

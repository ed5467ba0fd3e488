"""The one exception every stage raises for bad input, so the CLI can print it as a one-line message."""


class DataError(ValueError):
    """Bad input (a file, an id, a setting such as device cuda without a GPU); the message names it and the
    problem."""

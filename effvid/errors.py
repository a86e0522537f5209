"""Errors shared across effvid."""


class UserError(Exception):
    """An error caused by the user's input (a path, a value); printed without a traceback."""


class BadValue(ValueError):
    """A bad value of a named setting (a keyword argument, a config field). ``name``, ``value``
    and ``why`` let a command line say it as the option the user typed: ``effvid train``
    reports ``shift_div must be ...`` as ``argument --shift-div: must be ..., got 1``."""

    def __init__(self, name: str, value, why: str, message: str | None = None):
        super().__init__(message or f"{name} {why}, got {value!r}")
        self.name, self.value, self.why = name, value, why

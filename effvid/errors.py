"""Errors shared across effvid."""


class UserError(Exception):
    """An error caused by the user's input (a path, a value); printed without a traceback."""

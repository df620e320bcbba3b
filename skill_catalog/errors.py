"""Errors that reach a person: each message is one line naming the problem and the fix."""


class UserError(Exception):
    """Bad input from a user (a file, a flag, a checkpoint). The CLI prints it on one line and exits 2."""


class CatalogError(UserError):
    """A request the skill catalog cannot satisfy (unknown skill, impossible composition, ...)."""

"""Errors that reach a person: each message is one line naming the problem and the fix."""


class UserError(Exception):
    """Bad input from a user (a file, a flag, a checkpoint). The CLI prints it on one line and exits with `exit_code`."""

    exit_code: int = 2
    """Process exit status of the CLI when this error ends a command."""

    def one_line(self) -> str:
        """The message on one line (a multi-line message from a library is joined with ``; ``)."""
        return "; ".join(line.strip() for line in str(self).splitlines() if line.strip()) or type(self).__name__


class CatalogError(UserError):
    """A request the skill catalog cannot satisfy (unknown skill, impossible composition, ...)."""

"""Errors that reach the user as one clear line (the CLI prints the message, not a traceback)."""


class TrackerError(Exception):
    """A problem the user can act on. `exit_code` follows sysexits loosely: 2 = bad input/settings."""

    exit_code = 1


class SettingsError(TrackerError):
    """Invalid or missing settings; the message names the key and the problem."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class DatabaseError(TrackerError):
    """The database cannot be used as it is (unreachable, schema behind or ahead of the code)."""

    exit_code = 3


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached or written right now (locked, unreachable, disk full,
    read-only). `transient`: waiting and trying again may help, so the scheduler retries soon."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient

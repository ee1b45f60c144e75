"""User-facing errors: each names the problem and the fix, and the CLI prints it as one line."""

from __future__ import annotations


class StripeSyncError(Exception):
    """An expected failure a user can fix; shown as one line, without a traceback."""

    exit_code = 1

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}. {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix

    def one_line(self) -> str:
        """The message the CLI prints: problem, then fix, on one line."""
        text = (
            f"{self.problem}. {self.fix[:1].upper()}{self.fix[1:]}." if self.fix else self.problem
        )
        return " ".join(text.split()).replace("..", ".")


class SettingsError(StripeSyncError):
    """A setting (environment variable or CLI option) has a value we cannot use."""


class DatabaseError(StripeSyncError):
    """The warehouse cannot be reached or used."""


class StripeKeyError(StripeSyncError):
    """The Stripe key is missing, malformed or rejected."""


class PermissionsError(StripeSyncError):
    """A restricted key lacks permissions the sync needs."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            "the Stripe key lacks " + ", ".join(missing),
            "grant them in the Dashboard → Developers → API keys, then run `stripe-sync check`",
        )


class StateMismatchError(StripeSyncError):
    """The key belongs to another Stripe account than the data already synced."""


class SyncBusyError(StripeSyncError):
    """Another sync of the same warehouse is running."""


class StripeUnavailableError(StripeSyncError):
    """Stripe kept failing after every retry."""


class BuildError(StripeSyncError):
    """dbt models or tests failed."""

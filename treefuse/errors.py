"""The one exception type for problems a user can fix."""


class TreefuseError(Exception):
    """A user-facing problem (bad file, bad config, missing backend).

    The CLI prints the message as one line on stderr and exits 2. The message names
    the problem and, where there is one, the fix.
    """


class GateFailed(Exception):
    """A quality gate (parity, calibration verify) was run and did not pass: exit 1."""

"""The one exception type for problems a user can fix."""


class TreefuseError(Exception):
    """A user-facing problem (bad file, bad config, missing backend).

    The CLI prints the message as one line on stderr and exits 2. The message names
    the problem and, where there is one, the fix.
    """


class GateFailed(Exception):
    """A quality gate (parity, calibration verify) was run and did not pass: exit 1."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line: the first line of its text, whitespace squeezed."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(exc).__name__

"""Progress bars for people at a terminal; logs, pipes and `--json` runs get none. One helper for every command."""
from __future__ import annotations

import sys
from typing import Any, Iterable

_SILENCED = [False]  # set per command by the CLI: a `--json` run is a script's, not a person's


def silence(on: bool = True) -> None:
    """Draw no bars from now on (`on`), or draw them again on a terminal."""
    _SILENCED[0] = on


def on_terminal() -> bool:
    """True when stderr (where bars are drawn) is a terminal, not a log file or a pipe."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bars_wanted() -> bool:
    """True when a person watches: stderr is a terminal and the command was not asked for JSON."""
    return on_terminal() and not _SILENCED[0]


def progress_bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **options: Any) -> Any:
    """tqdm over `iterable` (its ETA shown from the first update), drawn only when `enabled` and wanted."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (enabled and bars_wanted()), **options)

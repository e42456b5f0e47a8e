"""Progress bars for people at a terminal; logs and pipes get none."""
from __future__ import annotations

import sys
from typing import Any, Iterable


def on_terminal() -> bool:
    """True when stderr (where bars are drawn) is a terminal, not a log file or a pipe."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **options: Any) -> Any:
    """tqdm over `iterable`, drawn only when `enabled` and on a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (enabled and on_terminal()), **options)

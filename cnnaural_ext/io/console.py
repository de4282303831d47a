"""What long-running code prints while it works: one-line reports and progress bars.

Both go to stderr through tqdm, so a report never breaks a running bar.
"""
from __future__ import annotations

import sys


def report(msg: str) -> None:
    """One line on stderr that does not break a running tqdm bar."""
    try:
        from tqdm import tqdm
        tqdm.write(msg, file=sys.stderr)
    except Exception:  # pragma: no cover - tqdm is a dependency
        print(msg, file=sys.stderr)


def progress_bar(items, enabled: bool = True, desc: str | None = None, unit: str = "file"):
    """`items` wrapped in a tqdm bar that disappears when done, or `items` itself if not `enabled`."""
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit=unit, leave=False)

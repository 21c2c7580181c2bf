"""What every part of the store shares: the one SQLite connection.

The store is one class (`Store`) made of a part per aggregate (deliveries, commands, runs, …);
each part is a class over this connection, so every method sees the same transactions and
aiosqlite's one worker thread serialises them, as a single class did.
"""

from __future__ import annotations

import aiosqlite


class Part:
    """A share of the store: its methods read and write their own tables on `_db`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

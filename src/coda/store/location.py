"""Where Coda keeps what it remembers: an SQLite file (the default) or a PostgreSQL database.

The ``store`` setting (``VoiceConfig.store_path``, TOML ``store``, ``CODA_STORE``,
``--store``) is a file path, ``sqlite:///path``, or ``postgresql://…``
(``postgres://`` too). Any other ``scheme://`` is refused, so a mistyped URL never
becomes an SQLite file named after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from coda.core.errors import ConfigurationError

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StoreLocation:
    """A parsed ``store`` setting.

    Attributes:
        kind: "sqlite" or "postgresql".
        target: The SQLite file's path, or the PostgreSQL URL as given.
    """

    kind: Literal["sqlite", "postgresql"]
    target: str

    @property
    def shared(self) -> bool:
        """Whether several Coda instances may use this store at once."""
        return self.kind == "postgresql"

    @property
    def path(self) -> Path:
        """The SQLite file.

        Raises:
            ConfigurationError: If this is not an SQLite store.
        """
        if self.kind != "sqlite":
            raise ConfigurationError(f"{self.redacted()} is not an SQLite file")
        return Path(self.target)

    def redacted(self) -> str:
        """The location with any password hidden, for logs and errors."""
        if self.kind != "postgresql":
            return self.target
        parts = urlsplit(self.target)
        if parts.password is None:
            return self.target
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))


def parse_store(value: str | Path, default: Path) -> StoreLocation:
    """The location a ``store`` setting names (``default`` for an empty one).

    Raises:
        ConfigurationError: For a URL whose scheme is neither ``sqlite`` nor
            ``postgresql``/``postgres``, or an ``sqlite://`` URL without a path.
    """
    text = str(value).strip() if value else ""
    if not text:
        return StoreLocation("sqlite", str(default))
    match = _SCHEME.match(text)
    if match is None:
        return StoreLocation("sqlite", text)
    scheme = match.group(1).lower()
    if scheme in POSTGRES_SCHEMES:
        return StoreLocation("postgresql", text)
    if scheme == "sqlite":
        path = text[len(match.group(0)) :]
        if not path:
            raise ConfigurationError("an sqlite:// store needs a path: sqlite:///var/lib/coda.db")
        return StoreLocation("sqlite", path)
    raise ConfigurationError(
        f"store {text.split('://')[0]}://… is not supported: use a file path (SQLite), "
        "sqlite:///path or postgresql://user@host/database"
    )

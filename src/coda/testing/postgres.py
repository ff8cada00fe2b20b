"""A throwaway PostgreSQL cluster on loopback, for the tests and ``coda bench store``.

The server refuses to run as root, so as root the cluster's folder is given to
the ``postgres`` user and every server command runs as that user (``runuser``).
The binaries are Debian's (``/usr/lib/postgresql/<version>/bin``), or those on
``$PATH``, or ``$CODA_PG_BIN``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from coda.testing.ports import free_port

DATABASE = "coda"
USER = "coda"


def postgres_bin() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``.

    Raises:
        FileNotFoundError: If PostgreSQL is not installed (``apt-get install postgresql``).
    """
    env = os.environ.get("CODA_PG_BIN")
    if env:
        return Path(env)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise FileNotFoundError(
        "PostgreSQL's server is not installed: `apt-get install postgresql` (`make test` "
        "does it), or point CODA_PG_BIN at the folder with initdb and pg_ctl"
    )


class ThrowawayPostgres:
    """A fresh cluster in a temporary folder, listening on 127.0.0.1; ``stop`` removes it.

    The folder is made under the system's temporary folder, not a caller's:
    pytest's are private to root, where the ``postgres`` user cannot reach.

    Args:
        port: The port (default: a free one).
        durable: Keep PostgreSQL's fsync on (benchmarks); off makes tests faster and
            changes nothing a client sees unless the machine itself crashes.
    """

    def __init__(self, port: int | None = None, durable: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="coda-postgres-"))
        self.port = port or free_port()
        self.durable = durable
        self.bin = postgres_bin()
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        """The ``coda`` database's URL."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self, database: str = "postgres") -> str:
        """A URL for another database of the cluster (to create or drop databases)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd="/")

    def start(self) -> ThrowawayPostgres:
        """Create the cluster and its ``coda`` database, and start the server."""
        if self._as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "--no-sync",
                  "-E", "UTF8", "--locale", "C")  # fmt: skip
        self.resume()
        self.create_database(DATABASE)
        return self

    def resume(self) -> None:
        """Start the server (again, after ``halt``: the data is as it was)."""
        options = [
            f"-p {self.port}",
            f"-k {self.folder}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                  "-o", " ".join(options), "start")  # fmt: skip

    def halt(self) -> None:
        """Stop the server at once, as a crash would (``resume`` starts it again)."""
        for _ in range(3):
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.5)

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.admin_url(name)

    def stop(self) -> None:
        """Stop the server at once and remove the cluster."""
        if (self.data / "postmaster.pid").exists():
            self.halt()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

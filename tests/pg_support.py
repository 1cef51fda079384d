"""A throwaway PostgreSQL cluster for the tests whose names contain ``postgres``.

Debian's server binaries (``initdb``, ``pg_ctl``: on PATH or under /usr/lib/postgresql/<v>/bin) make a
cluster in a fresh temporary folder that listens on a unix socket there only (no TCP port), with trust
authentication. PostgreSQL refuses to run as root, so as root the server runs as ``nobody``. Outside CI a
machine without the binaries skips these tests with the reason; in CI (``CI`` set) it fails instead, since
``.ci/run`` installs the package.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster; yields a SQLAlchemy URL to its ``postgres`` database; stops and removes it after."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (.ci/run installs it; in CI these tests must run)")
        pytest.skip(reason)
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "nobody", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="brainseg-pg-"))
    data, sockets = folder / "data", folder / "sock"
    sockets.mkdir()
    if as_root:
        shutil.chown(folder, "nobody")
        shutil.chown(sockets, "nobody")
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                        "--no-sync"],
                       check=True, capture_output=True, cwd=folder, env=env)
        options = f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=50"
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True, cwd=folder, env=env)
    except subprocess.CalledProcessError as err:
        log = (folder / "server.log").read_text() if (folder / "server.log").is_file() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {err.stderr.decode(errors='replace')}\n{log}") from err
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sockets}&port={port}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True,
                       cwd=folder, env=env)
        shutil.rmtree(folder, ignore_errors=True)


def reset_database(url: str) -> None:
    """Drop the brainseg tables, so each test starts from an empty store."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("DROP TABLE IF EXISTS review, corrections"))
    engine.dispose()

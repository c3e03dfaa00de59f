"""`make run`: the API and admin, a worker and the scheduler, until Ctrl-C stops them all. One
that dies (an OOM kill, a crash) is started again, the others keep running."""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from config import embedded
from config.core.prometheus import multiprocess_dir_reset
from config.core.server import DEFAULT_THREADS, web_argv

# A child that dies is started again after this many seconds, doubled while it keeps dying within
# STABLE_AFTER seconds of its start, up to RESTART_DELAY_MAX.
RESTART_DELAY_FIRST = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0


class Child:
    """One process `serve` runs (the web server, a worker, the scheduler), in a process group of
    its own, and when it died, when to start it again."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name, self.argv = name, argv
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.delay = RESTART_DELAY_FIRST / 2  # doubled at the first quick death
        self.restart_at: float | None = None

    def start(self, env: dict[str, str], preexec: Callable[[], None]) -> None:
        if self.process is not None:
            self._kill_group()  # what the dead one left behind (a worker's pool processes)
        # preexec_fn: this process runs no other thread while it starts its children.
        self.process = subprocess.Popen(self.argv, env=env, start_new_session=True, preexec_fn=preexec)  # noqa: S603, PLW1509
        self.started = time.monotonic()
        self.restart_at = None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, signum: int) -> None:
        if self.process is not None:
            self.process.send_signal(signum)

    def wait_or_kill(self, *, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._kill_group()  # anything of its group still there

    def _kill_group(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Command(BaseCommand):
    help = "Serve the API and admin with a Celery worker and the periodic scheduler (embedded: in-process)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

    def supervise(self, child: Child, env: dict[str, str], preexec: Callable[[], None]) -> None:
        """Restart a child that died (an OOM kill, a crash) instead of stopping the others: after
        RESTART_DELAY_FIRST seconds, doubled for each death that follows a start within
        STABLE_AFTER seconds, up to RESTART_DELAY_MAX, so a child that cannot start (a broken
        setting, a port taken) is retried a few times a minute, not in a loop."""
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                self.stderr.write(f"restarting {child.name}")
                child.start(env, preexec)
            return
        code = child.exit_code()
        if code is None:
            return
        ran = now - child.started
        child.delay = RESTART_DELAY_FIRST if ran >= STABLE_AFTER else min(child.delay * 2, RESTART_DELAY_MAX)
        child.restart_at = now + child.delay
        self.stderr.write(f"{child.name} exited with {code} after {ran:.0f} s; restarting it in {child.delay:.0f} s")

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        host, port = options["host"], options["port"]
        bind = f"{host}:{port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
            # Every process of the stack records its metrics here and /metrics adds them up;
            # emptied now, since files of an earlier run would be counted again.
            "PROMETHEUS_MULTIPROC_DIR": os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            or str(settings.BASE_DIR / "var" / "prometheus"),
        }
        multiprocess_dir_reset(env["PROMETHEUS_MULTIPROC_DIR"])
        if settings.EMBEDDED_MODE:
            database = "embedded PostgreSQL in var/postgres" if settings.EMBEDDED_DATABASE else "PostgreSQL"
            state = "Redis" if settings.REDIS_URL else "the database"
            self.stdout.write(
                f"Mode: embedded ({database}, tasks run in-process, session state in {state}). "
                "Set DATABASE_URL, REDIS_URL and CELERY_BROKER_URL for PostgreSQL, Redis and Celery workers."
            )
            # One web process whose threads also run the tasks (in-process): a laptop's load.
            web = web_argv(python, host=host, port=port, workers=1, threads=8)
            commands = {"web": web, "scheduler": [python, "manage.py", "run_scheduler"]}
        else:
            self.stdout.write(
                f"Mode: production-like (PostgreSQL, Redis, Celery broker {_redact(settings.CELERY_BROKER_URL)})."
            )
            web = web_argv(
                python,
                host=host,
                port=port,
                workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
                threads=int(os.environ.get("WEB_THREADS", str(DEFAULT_THREADS))),
            )
            commands = {
                "web": web,
                "worker": [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "-Q",
                    "default,routing,maintenance,delivery,journeys",
                    "--loglevel",
                    "INFO",
                ],
                "scheduler": [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(settings.BASE_DIR / "var" / "celerybeat-schedule"),
                ],
            }
        (settings.BASE_DIR / "var").mkdir(exist_ok=True)
        self.stdout.write(
            f"Serving at http://{bind}/ (that page says where everything is): the admin at http://{bind}/admin/ , "
            f"docs at http://{bind}/api/docs/"
        )
        self.stdout.flush()
        # Each in a process group of its own: a Ctrl-C (SIGINT to the terminal's group) reaches only
        # this process, which stops each child with one SIGTERM, and whatever a child left behind
        # (a web worker under a master killed at the deadline) is killed with its group. A web
        # worker that got the terminal's SIGINT while its master was stopping it sometimes never
        # stopped (granian 2.8.7), and held the terminal's pipe open after everything else had gone.
        # And each is told by the kernel when this process goes, however it goes: stopped by a
        # SIGKILL (an OOM kill, a supervisor's last resort), it could not stop them itself, and
        # they would run on, orphaned, holding the port.
        stop_with_me = _stop_with_parent(os.getpid())
        children = [Child(name, argv) for name, argv in commands.items()]
        for child in children:
            child.start(env, stop_with_me)
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            for child in children:
                self.supervise(child, env, stop_with_me)
            time.sleep(0.2)
        for child in children:
            if child.running():
                child.send(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children:
            child.wait_or_kill(timeout=max(0.1, deadline - time.monotonic()))
        if settings.EMBEDDED_DATABASE:
            # Last, once nothing uses it; `make run` starts it again (its data stays in var/).
            embedded.stop(embedded.data_dir(settings.BASE_DIR))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent(parent: int) -> Callable[[], None]:
    """What a child runs before it execs: SIGTERM to it when `parent` exits (Linux; elsewhere
    nothing). If the parent has already gone by then, it stops at once."""

    def arrange() -> None:
        if not sys.platform.startswith("linux"):
            return
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"

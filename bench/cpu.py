"""CPU time of other processes, read from /proc, for the in-process profilers (bench/profile_*.py):
the PostgreSQL backend serving them and the Redis server, beside their own process_time()."""

from pathlib import Path


def process_ticks(pid: int) -> int:
    """User + system CPU of a process, in clock ticks (os.sysconf("SC_CLK_TCK") per second)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def redis_ticks() -> int:
    """CPU of every redis-server on the machine, in clock ticks."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"redis-server"):
                    total += process_ticks(int(entry.name))
            except OSError:
                continue
    return total

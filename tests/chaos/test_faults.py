"""Chaos: break one dependency during traffic, let the system settle, check what it promised.

Each test runs the load (tests/chaos/conftest.py, Traffic) against the web server and a real
worker on throwaway services, applies one fault for a few seconds while the load runs, stops the
load and checks the invariants:
- every answer was 2xx (412 to a stale conditional PATCH), or a JSON 503 with Retry-After;
- every session GET returned a version at least the one acknowledged before it was sent;
- every worker that should run is alive, and consumes a task sent after the fault;
- every messageId answered 2xx is stored exactly once, every stored event is routed exactly once
  (one RouteLog row: orchestration/models.py) and the outbox is empty.
"""

import pprint
import time
from typing import Any

import pytest
import redis

from tests.chaos.conftest import SETTLE_SECONDS, SWEEP_EVERY_SECONDS, System, Traffic
from tests.throwaway import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.worker]

FAULT_SECONDS = 2.0
# Each broker test loses the connection this many times, each while the worker holds an
# unacknowledged task: a worker has to come back from every one.
BROKER_DROPS = 2
# Sweeps due in an hour that the worker holds meanwhile, as a busy routing worker holds its
# prefetched tasks (acks_late).
HELD = 3


def _flowing(traffic: Traffic, rounds: int = 3) -> None:
    """Wait until both load threads have done `rounds` more requests (answered or not), so what
    comes next lands mid-traffic and the fault before it met traffic."""
    batches, sessions = traffic.progress()

    def advanced() -> bool:
        now = traffic.progress()
        return now[0] >= batches + rounds and now[1] >= sessions + rounds

    wait_until(advanced, timeout=90, message=f"{rounds} more batches and session rounds")


def _routing(system: System) -> None:
    """Wait until the worker routes something new: it is connected and holds tasks again."""
    before = system.routed()
    wait_until(lambda: system.routed() > before, timeout=90, message="the worker routes new events")


def _holding_unacked(system: System) -> None:
    """Routing again, and holding a task it has not acknowledged: a broker connection lost in
    that state is the one seen to kill workers (a routing retry's backoff holds one like it)."""
    _routing(system)
    for _ in range(HELD):
        system.sweep(countdown=3600)
    wait_until(system.worker_holds_unacked, timeout=60, message="the worker holds an unacknowledged task")


def _during(traffic: Traffic) -> None:
    """A fault lasts FAULT_SECONDS and at least until the load has met it."""
    time.sleep(FAULT_SECONDS)
    _flowing(traffic, rounds=1)


def _answers_and_workers(system: System, traffic: Traffic) -> None:
    traffic.stop()
    for session_id in traffic.acked_version:
        traffic.read(session_id)
    broken = {
        "answers other than 2xx, 412 or a JSON 503 with Retry-After": traffic.bad_answers()[:10],
        "stale session reads": traffic.stale_reads[:10],
        "dead workers (pids)": system.dead_workers(),
    }
    assert not any(broken.values()), _report(broken, traffic)
    assert traffic.acknowledged, "no batch was acknowledged: the test proved nothing"


def _stored_and_routed_once(system: System, traffic: Traffic) -> None:
    system.settle()
    stored = system.stored_message_ids()
    routes = system.routes_per_event()
    broken = {
        "acknowledged messageIds not stored exactly once": {
            m: stored.get(m, 0) for m in sorted(traffic.acknowledged) if stored.get(m, 0) != 1
        },
        "events not routed exactly once (event id: RouteLog rows)": {e: n for e, n in routes.items() if n != 1},
        "RouteLog rows of no event": system.stray_routes(),
    }
    assert not any(broken.values()), _report(broken, traffic)


def _report(broken: dict[str, Any], traffic: Traffic) -> str:
    """What broke, and the load's answers counted by method and status, for the failure message."""
    lines = [f"{what}: {pprint.pformat(found, width=150)}" for what, found in broken.items() if found]
    lines.append(f"answers: {dict(sorted(traffic.answer_counts().items()))}")
    return "\n".join(lines)


def _a_fresh_event_is_routed(system: System, traffic: Traffic) -> None:
    """The workers still consume: a batch sent now is routed (swept along, as beat would)."""
    answer, ids = traffic.send_batch(f"fresh-{time.monotonic_ns()}")
    assert answer.status == 200, str(answer)
    last = time.monotonic()

    def routed() -> bool:
        nonlocal last
        if time.monotonic() - last > SWEEP_EVERY_SECONDS:
            system.sweep()
            last = time.monotonic()
        rows = system.query(
            "SELECT count(*) FROM profiles_event e JOIN orchestration_routelog r ON r.event_id = e.id "
            "WHERE e.message_id = ANY(%s)",
            [ids],
        )
        return rows[0][0] == len(ids)

    wait_until(routed, timeout=SETTLE_SECONDS, interval=0.2, message="a batch sent after the fault is routed")
    assert system.dead_workers() == []


def _kept(system: System, traffic: Traffic) -> None:
    _answers_and_workers(system, traffic)
    _stored_and_routed_once(system, traffic)
    _a_fresh_event_is_routed(system, traffic)


def test_worker_killed_mid_routing(system: System) -> None:
    with Traffic(system, "kill") as traffic:
        _routing(system)
        system.kill_worker(system.workers[0])
        _flowing(traffic)
        system.start_worker()
        _flowing(traffic)
    _kept(system, traffic)


def test_postgres_restarted_during_traffic(system: System) -> None:
    with Traffic(system, "pg") as traffic:
        _flowing(traffic)
        system.cluster.postgres.stop(mode="immediate")
        _during(traffic)
        system.cluster.postgres.start()
        _flowing(traffic)
    _kept(system, traffic)


def test_state_redis_partitioned_then_healed(system: System) -> None:
    with Traffic(system, "cut") as traffic:
        _flowing(traffic)
        system.state_link.cut()
        _during(traffic)
        system.state_link.heal()
        _flowing(traffic)
    _kept(system, traffic)


def test_state_redis_flushed_during_traffic(system: System) -> None:
    with Traffic(system, "flush") as traffic:
        _flowing(traffic)
        # FLUSHALL of the test's own throwaway Redis, never of the shared one.
        redis.Redis.from_url(system.state.url).flushall()
        _flowing(traffic)
    _kept(system, traffic)


def test_broker_partitioned_then_healed(system: System) -> None:
    """Cut BROKER_DROPS times, each once the worker is routing again and holds an unacknowledged task."""
    with Traffic(system, "broker-cut") as traffic:
        for _ in range(BROKER_DROPS):
            _holding_unacked(system)
            system.broker_link.cut()
            _during(traffic)
            system.broker_link.heal()
        _flowing(traffic)
    _kept(system, traffic)


def test_broker_killed_and_restarted(system: System) -> None:
    """SIGKILL and restart BROKER_DROPS times, each once the worker routes and holds an unacknowledged
    task. The broker keeps nothing on disk: the tasks queued in it are lost, and the sweeper
    brings their events back."""
    with Traffic(system, "broker-kill") as traffic:
        for _ in range(BROKER_DROPS):
            _holding_unacked(system)
            system.broker.kill()
            _during(traffic)
            system.broker.start()
        _flowing(traffic)
    _kept(system, traffic)

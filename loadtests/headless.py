"""Run one cell headless through Locust's library API (``python -m progressbench.loadtests.headless``).

Roles: ``local`` (one process), or ``master`` + ``worker`` processes for
Locust's distributed mode. The local/master process stops the run when every
expected session is in the sink, or at the cell's hard deadline; workers
follow their master. Exit status: 0 when every session was collected, 3 when
the deadline cut the cell short (what was collected is kept).

Start-up and exit are on every cell's clock, so neither waits for nothing:
a process that runs phones starts its session agent before it imports
Locust (the agent imports its cell's client meanwhile: the first phone waits
for the longer of the two, not their sum), and a finished process leaves
without the interpreter's teardown once its files are written.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from gevent import monkey

# Locust patches the process when imported; patching first lets the agent start before that import.
monkey.patch_all()

import gevent  # noqa: E402
from progressbench.loadtests import bridge  # noqa: E402

if TYPE_CHECKING:
    from locust.runners import Runner

_stop = {"requested": False}
#: A worker's last session records may still be queued for its master in ZeroMQ: it exits the
#: normal way, whose teardown lets ZeroMQ send them (its linger).
_worker = {"role": False}


def _request_stop() -> None:
    _stop["requested"] = True


#: Seconds a cell whose sessions are all in waits for the phones to pass on their Locust entries.
STATISTICS_GRACE_S = 30.0


def _wait_for_statistics(users: int, until: float) -> None:
    """Until every phone has retired, i.e. fired its last session's Locust entries.

    A record reaches the sink as soon as its session ends; the phone's entries
    for Locust's statistics follow once the agent has scored the session. The
    cell must not end in between, or its statistics lack the last sessions.
    """
    from progressbench.loadtests import locustfile

    while locustfile.RETIRED.count < users and time.monotonic() < until and not _stop["requested"]:
        gevent.sleep(0.05)


def _wait_for(runner: Runner, count: int, users: int, deadline: float) -> bool:
    """Until every session is in, the deadline, a stop request, or no phone is left.

    Phones retire when their work is done or their session agent died; if all
    have retired (for 5 s, after spawning) and sessions are still missing,
    waiting longer cannot help: the cell ends now, incomplete.
    """
    from progressbench.loadtests import locustfile

    idle_since: float | None = None
    while time.monotonic() < deadline and not _stop["requested"]:
        if locustfile.SINK.count >= count:
            _wait_for_statistics(users, min(deadline, time.monotonic() + STATISTICS_GRACE_S))
            return True
        spawned = runner.state not in ("ready", "spawning")
        if spawned and locustfile.RETIRED.count >= users:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 5.0:
                logging.getLogger(__name__).error(
                    "every phone stopped with %d of %d sessions in: ending the cell",
                    locustfile.SINK.count,
                    count,
                )
                return False
        else:
            idle_since = None
        gevent.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="progressbench.loadtests.headless")
    parser.add_argument("--role", choices=("local", "master", "worker"), default="local")
    parser.add_argument("--master-port", type=int, default=0)
    parser.add_argument("--expect-workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The harness stops a cell with SIGTERM; quit through Locust so the
    # quitting hooks flush in-flight sessions.
    gevent.signal_handler(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.role != "master":  # a master runs no phone, so it has no agent
        bridge.start_early()

    from locust import events
    from locust.env import Environment
    from locust.runners import MasterRunner
    from locust.stats import print_stats, stats_history
    from progressbench.loadtests import locustfile

    plan = locustfile.PLAN
    env = Environment(user_classes=[locustfile.Phone], events=events)
    if args.role == "worker":
        _worker["role"] = True
        follower = env.create_worker_runner("127.0.0.1", args.master_port)
        events.init.fire(environment=env, runner=follower, web_ui=None)
        follower.greenlet.join()
        events.quitting.fire(environment=env, reverse=True)
        return 0

    leader: Runner
    if args.role == "master":
        leader = env.create_master_runner("127.0.0.1", args.master_port)
    else:
        leader = env.create_local_runner()
    runner = leader
    events.init.fire(environment=env, runner=leader, web_ui=None)
    deadline = time.monotonic() + plan.deadline_s()
    if args.role == "master":
        while isinstance(leader, MasterRunner) and len(leader.clients.ready) < args.expect_workers:
            if time.monotonic() > deadline:
                print("workers did not connect in time", file=sys.stderr)
                runner.quit()
                return 1
            gevent.sleep(0.1)
    if plan.locust_stats is not None:
        gevent.spawn(stats_history, runner)  # the charts of Locust's HTML report
    runner.start(plan.users, spawn_rate=plan.spawn_rate)
    complete = _wait_for(leader, plan.expected_sessions, plan.users, deadline)
    phones = runner.user_count
    runner.quit()
    events.quitting.fire(environment=env, reverse=True)
    # Sessions cut off by the deadline are flushed as the agents quit: counted, they complete the cell.
    complete = complete or locustfile.SINK.count >= plan.expected_sessions
    logging.getLogger(__name__).info(
        "cell ended: %d of %d phones started, %d retired; %d of %d sessions in",
        phones,
        plan.users,
        locustfile.RETIRED.count,
        locustfile.SINK.count,
        plan.expected_sessions,
    )
    print_stats(env.stats, current=False)
    for path in locustfile.save_stats(env, with_csv=True):
        print(f"Locust statistics: {path}")
    return 0 if complete else 3


def leave(code: int) -> None:
    """Exit with ``code`` now: the sessions and statistics are written and closed, so flush what is
    buffered and skip the interpreter's teardown (most of a second under gevent, on every cell's clock)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    if _worker["role"]:
        sys.exit(code)
    leave(code)

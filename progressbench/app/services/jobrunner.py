"""Cloud-Run-Jobs-style runner: ``python -m progressbench.app.services.jobrunner JOB_ID...``.

A job execution is ``CLOUD_RUN_TASK_COUNT`` tasks; task ``CLOUD_RUN_TASK_INDEX``
takes every COUNT-th of the given job ids, runs each to its end with no
request timeout, and exits 0 only if all of them finished (done or failed
as designed). A non-zero exit is what makes Cloud Run Jobs retry the task
(``CLOUD_RUN_TASK_ATTEMPT`` increments); the retry resumes each job from its
last committed step. The attempt and task coordinates are recorded as the
job's execution context, so a report can tell where the work really ran.

SIGTERM behaves as in a service instance: finish or abandon the current step
within the grace budget, release the job, exit non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import uuid

from progressbench.core.config import load_service_config
from progressbench.core.errors import ProgressbenchError
from progressbench.kit.executor import ExecutionContext, run_job
from progressbench.kit.store import Store

log = logging.getLogger("progressbench.jobrunner")


def task_coordinates(environ: dict[str, str]) -> tuple[int, int, int]:
    def read(key: str, default: int) -> int:
        raw = environ.get(key, str(default))
        if not raw.isdigit():
            raise ProgressbenchError(f"{key} must be a non-negative integer, got {raw!r}")
        return int(raw)

    index, count = read("CLOUD_RUN_TASK_INDEX", 0), read("CLOUD_RUN_TASK_COUNT", 1)
    if count < 1 or index >= count:
        raise ProgressbenchError(f"CLOUD_RUN_TASK_INDEX {index} is outside CLOUD_RUN_TASK_COUNT {count}")
    return index, count, read("CLOUD_RUN_TASK_ATTEMPT", 0)


async def _run(job_ids: list[uuid.UUID], index: int, count: int, attempt: int) -> bool:
    config = load_service_config()
    store = Store(config.database_url, max_size=4)
    await store.open()
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, shutdown.set)
    ctx = ExecutionContext(
        kind="job-runner",
        service="job-runner",
        instance=f"{config.instance}-task{index}-attempt{attempt}",
        extra={"task_index": index, "task_count": count, "task_attempt": attempt},
    )
    ok = True
    try:
        for job_id in job_ids[index::count]:
            outcome = await run_job(store, job_id, ctx, config.timing, shutdown)
            log.info("job %s: %s", job_id, outcome)
            ok = ok and outcome in ("done", "failed")
            if shutdown.is_set():
                return False
    finally:
        await store.close()
    return ok


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s jobrunner %(levelname)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    try:
        ids = [uuid.UUID(a) for a in args]
    except ValueError as exc:
        print(f"jobrunner: not a job id: {exc}", file=sys.stderr)
        return 2
    try:
        index, count, attempt = task_coordinates(dict(os.environ))
        return 0 if asyncio.run(_run(ids, index, count, attempt)) else 1
    except ProgressbenchError as exc:
        print(f"jobrunner: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

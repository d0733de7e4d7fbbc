"""``misdeployed`` for the patterns that dispatch to a worker: resumable ``sse`` and ``polling``.

With the job resource missing (seeds/004), the API's dispatch falls back to its
own ``/jobs/run`` endpoint: the job still finishes, in the API's request, and
the ledger's truth says it ran outside its declared context (the
``silent-fallback`` the gate requires under this fault). Real processes, bounded.
"""

from __future__ import annotations

from typing import Any

import httpx

from progressbench.app.supervisor import Stack
from progressbench.app.truth import read_truth
from tests.helpers import UNIT
from tests.integration.api_client import auth, create_job, event_seqs, job_row, wait_status

SHORT: dict[str, Any] = {"step_seconds_min": 2, "step_seconds_max": 2}


def test_sse_and_polling_jobs_fall_back_into_the_api_request_and_are_named(misdeployed_stack: Stack) -> None:
    stack = misdeployed_stack
    api = stack.endpoints()["api"]
    polled = create_job(stack, "fran", **SHORT)["job_id"]
    body = {"seed": 4, "time_scale": stack.settings.timing.time_scale, "shape": SHORT}
    response = httpx.post(f"{api}/sse/jobs", json=body, headers=auth(api, "gus"), timeout=10 * UNIT)
    assert response.status_code == 202, response.text
    streamed = response.json()["job_id"]
    for job_id in (polled, streamed):
        assert wait_status(stack, job_id, {"done", "failed"}, 60)["status"] == "done"
        context = job_row(stack, job_id)["context"]
        assert (context["service"], context["kind"]) == ("api", "request"), context
        assert event_seqs(stack, job_id)[-1] >= 2
    truths = read_truth(stack.database_url, [polled, streamed])
    assert truths[polled].ran_outside("worker/worker-background")
    assert truths[streamed].ran_outside("worker/worker-background")

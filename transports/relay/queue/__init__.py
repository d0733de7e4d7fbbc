"""The relay's first subsystem: a Cloud-Tasks-style queue that pushes each job to a worker.

``service`` is the process (role ``queue``: CreateTask, JWKS); ``dispatcher``
pushes due tasks with retries; ``tasks`` is its durable state; ``retry`` the
pure schedule, rate limit and headers; ``oidc`` signs the pushes (and lets
the worker verify them). The other subsystem, the rooms, shares nothing with
it but the job id: :mod:`progressbench.transports.relay.rooms`.
"""

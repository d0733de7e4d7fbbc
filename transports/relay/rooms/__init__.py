"""The relay's second subsystem: PartyKit-style rooms, one per job, on the ``websockets`` server.

One room per job at ``/parties/main/<job_id>``:

* **join** — a WebSocket to the room's path with ``?token=<job token>`` (the
  per-job HS256 JWT the API returned; partysocket passes auth as query
  parameters). ``401`` for a missing/bad/expired token, ``403`` when the
  token's ``job_id`` is not the room (or its ``sub`` is not the owner the room
  learnt from a publish), ``429`` when the room is at its cap (PartyKit: 100
  connections without hibernation), ``404`` for any other path;
* **publish** — ``POST /parties/main/<job_id>`` with a service token and one
  event as JSON: the room broadcasts it to every socket in it and answers
  ``200 {"delivered": n}``. No history is kept (PartyKit's default): a
  socket that was not in the room when a message was published never sees it.

Modules, by seam: ``policy`` (who may join or publish into which room; pure),
``hub`` (membership and broadcast), ``http11`` (the publish request, read
sans-I/O with its bounds), ``connection`` (the socket that routes a publish
past the WebSocket handshake), ``config`` and ``meters``, and ``service``
(the process: ``python -m progressbench.transports.relay.rooms.service``, role
``rooms``). The rooms share nothing with the queue
(:mod:`progressbench.transports.relay.queue`) but the job id.
"""

"""The polling server's memory of each job's ETag: a 304 from memory only while nothing can have changed."""

from __future__ import annotations

import uuid

from progressbench.transports.polling.etags import EtagCache

JOB, OTHER = uuid.uuid4(), uuid.uuid4()


def live_cache(max_entries: int = 100) -> EtagCache:
    cache = EtagCache(max_entries)
    cache.live(True)
    return cache


def test_a_stored_etag_answers_its_owner_until_the_job_changes() -> None:
    cache = live_cache()
    assert cache.put(cache.ticket(JOB), "alice", '"a"', terminal=False)
    assert cache.match(JOB, "alice", '"a"') is not None
    assert cache.match(JOB, "alice", '"b"') is None, "another ETag is a change the client has not seen"
    assert cache.match(JOB, "mallory", '"a"') is None, "a stranger's poll goes to the database (and 404s)"
    cache.changed(JOB)
    assert cache.match(JOB, "alice", '"a"') is None


def test_a_read_that_a_change_overtook_is_not_stored() -> None:
    """The read began before step 3 committed; its notice came before the answer: storing it would lie."""
    cache = live_cache()
    ticket = cache.ticket(JOB)
    cache.changed(JOB)
    assert not cache.put(ticket, "alice", '"old"', terminal=False)
    assert cache.match(JOB, "alice", '"old"') is None
    assert cache.put(cache.ticket(JOB), "alice", '"new"', terminal=False)


def test_a_gap_in_the_feed_forgets_everything_and_nothing_is_trusted_while_it_lasts() -> None:
    cache = live_cache()
    cache.put(cache.ticket(JOB), "alice", '"a"', terminal=False)
    ticket = cache.ticket(OTHER)
    cache.live(False)
    assert cache.match(JOB, "alice", '"a"') is None
    assert not cache.put(cache.ticket(JOB), "alice", '"a"', terminal=False)
    cache.live(True)
    assert not cache.put(ticket, "bob", '"o"', terminal=False), "read before the gap"
    cache.missed()
    assert cache.match(JOB, "alice", '"a"') is None


def test_the_cache_is_bounded_and_an_untracked_change_distrusts_everything() -> None:
    cache = live_cache(max_entries=2)
    jobs = [uuid.uuid4() for _ in range(3)]
    for job in jobs:
        assert cache.put(cache.ticket(job), "alice", f'"{job}"', terminal=True)
    assert cache.match(jobs[0], "alice", f'"{jobs[0]}"') is None, "the oldest went first"
    assert cache.match(jobs[2], "alice", f'"{jobs[2]}"') is not None
    for job in jobs[:2]:
        cache.changed(job)
    cache.changed(jobs[2])  # a third version to track: no room, so the cache starts over
    assert cache.match(jobs[2], "alice", f'"{jobs[2]}"') is None

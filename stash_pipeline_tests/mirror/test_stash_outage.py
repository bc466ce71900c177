"""A Stash that goes away mid-sync (restarting: connections refused for a while).

The fake's ``outage`` fault drops one request deep inside the images pages and then refuses every
connection for the given time before it listens again on the same port with the same data.  The
sync waits for it (retries by time, ``STASH_RETRY_SECONDS``), saying so in the log, and ends in a
complete run; one that waits less fails with a message saying how long it tried, and the next run
resumes from the committed pages.
"""

import logging
import time

import httpx
import pytest

from stash_pipeline.model import SPECS_BY_NAME
from stash_pipeline.runner import _root_cause
from stash_pipeline.stash.queries import page_query
from stash_pipeline_tests.mirror.conftest import MirrorEnv

OUTAGE_AFTER_PAGES = 2  # images pages answered before the outage


def _arm_outage(env: MirrorEnv, seconds: float) -> None:
    env.fake.faults.add(
        "outage", match=page_query(SPECS_BY_NAME["images"], False), after=OUTAGE_AFTER_PAGES, seconds=seconds
    )


def _wait_until_back(env: MirrorEnv, deadline_seconds: float = 120) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not env.server.outages:
        assert time.monotonic() < deadline, "the fake never came back from its outage"
        time.sleep(0.1)


def test_a_stash_down_for_60_seconds_mid_sync_is_waited_for(mirror_env, caplog) -> None:
    env: MirrorEnv = mirror_env()
    _arm_outage(env, seconds=60)
    with caplog.at_level(logging.WARNING, logger="stash_pipeline.stash"):
        result = env.full(retries=None, retry_seconds=300)
    assert result.success
    assert env.server.outages == [60]  # it really went away for the whole minute
    waits = [r.getMessage() for r in caplog.records if "waiting for it" in r.getMessage()]
    assert waits
    assert "connection" in waits[0]  # "failed (connection error ...); waiting for it: retry 1 in"
    env.assert_equal()


def test_a_stash_down_longer_than_the_wait_fails_clearly_then_the_next_run_resumes(mirror_env) -> None:
    env: MirrorEnv = mirror_env()
    _arm_outage(env, seconds=6)
    failed = env.full(retries=None, retry_seconds=1, raise_on_error=False)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    message = _root_cause(failure.step_failure_data.error)
    assert "Stash ImagesPage" in message
    assert "Connection refused" in message
    assert "STASH_RETRY_SECONDS" in message
    _wait_until_back(env)
    assert env.full().success
    env.assert_equal()


def test_the_fake_refuses_connections_during_an_outage(mirror_env) -> None:
    env: MirrorEnv = mirror_env()
    env.fake.faults.add("outage", seconds=0.5)
    with httpx.Client() as http:
        with pytest.raises(httpx.TransportError):
            http.post(env.server.url + "/graphql", json={"query": "{ systemStatus { status } }"})
        _wait_until_back(env)
        answer = http.post(env.server.url + "/graphql", json={"query": "{ systemStatus { status } }"})
    assert answer.status_code == 200

"""The Kubernetes client repeats what the server asked to repeat, and backs off: after a 429 it
sends nothing before Retry-After, a 5xx is retried after a growing pause, a create never."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from proctor import kube
from proctor.kube import KubeClient, KubeError


class Answers:
    """Stands in for ApiClient.call_api: the statuses to answer, in order, then 200."""

    def __init__(self, *statuses: int, retry_after: str | None = None) -> None:
        self.statuses = list(statuses)
        self.retry_after = retry_after
        self.times: list[float] = []

    def __call__(self, path: str, method: str, **_: object) -> object:
        self.times.append(time.monotonic())
        if self.statuses:
            status = self.statuses.pop(0)
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            response = SimpleNamespace(
                status=status, reason="injected", data=b"{}", getheaders=lambda: headers
            )
            raise ApiException(http_resp=response)
        return SimpleNamespace(data=b'{"kind": "Pod"}')


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(kube, "BACKOFF_SECONDS", 0.01)


def _client(answers: Answers) -> KubeClient:
    api = client.ApiClient()
    kube_client = KubeClient(api)
    api.call_api = answers  # type: ignore[method-assign]
    return kube_client


def test_a_429_holds_back_every_request_of_the_client_until_retry_after(fast):
    answers = Answers(429, retry_after="0.3")
    kube_client = _client(answers)
    assert kube_client.get("v1", "Pod", "default", "p") == {"kind": "Pod"}
    first, retry = answers.times
    assert retry - first >= 0.3
    answers.statuses = [429]
    kube_client.get("v1", "Pod", "default", "p")
    started = time.monotonic()
    kube_client.get("v1", "Pod", "default", "other")  # another request waits its turn too
    assert answers.times[-1] - answers.times[-3] >= 0.3
    assert time.monotonic() - started < 0.3


def test_5xx_is_retried_with_backoff_then_reported(fast):
    answers = Answers(500, 503, 503, 500, 500)
    with pytest.raises(KubeError, match="500"):
        _client(answers).get("v1", "Pod", "default", "p")
    assert len(answers.times) == kube.RETRIES + 1
    gaps = [b - a for a, b in zip(answers.times, answers.times[1:], strict=False)]
    assert gaps[-1] > gaps[0], gaps  # exponential


def test_a_create_is_not_repeated_after_a_5xx_it_may_have_carried_out(fast):
    answers = Answers(500)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}}
    with pytest.raises(KubeError):
        _client(answers).create(pod)
    assert len(answers.times) == 1


def test_urllib3_leaves_answers_to_the_client():
    pools = _client(Answers()).api.rest_client.pool_manager
    retries = pools.connection_pool_kw["retries"]
    assert not retries.respect_retry_after_header
    assert not retries.is_retry("GET", 429, has_retry_after=True)

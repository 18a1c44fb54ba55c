"""The real-server tier's own checks: the fixture gives a reachable v1.2x API server, a
fresh namespace per test, and a limited user that RBAC denies."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from realkube import RealKube


def test_the_server_is_real_and_serves_server_side_apply(
    real_kube: RealKube, kube_namespace: str
) -> None:
    version = k8s_client.VersionApi(real_kube.api_client()).get_code()
    assert version.major == "1"
    assert int(version.minor.rstrip("+")) >= 28
    ns = real_kube.core().read_namespace(kube_namespace)
    assert ns.status.phase == "Active"


def test_the_limited_user_is_denied_by_rbac(real_kube: RealKube, kube_namespace: str) -> None:
    limited = k8s_client.CoreV1Api(real_kube.api_client(limited=True))
    with pytest.raises(ApiException) as caught:
        limited.list_namespaced_secret(kube_namespace, _request_timeout=30)
    assert caught.value.status == 403

"""No outbound connection reaches a link-local or cloud metadata address, however the
address is spelled (numeric, hex, octal, IPv4-mapped IPv6) or resolved (a DNS name).

The git layer refuses such hosts when a URL is parsed and again right before git
connects (the host resolved then, the addresses pinned for curl); the HTTP clients
(Argo CD, Prometheus, the model-server probe) check every address at connect time.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops.engine import netguard
from llmops.engine.actuate import argocd
from llmops.engine.settings import ArgoCdSettings
from llmops.engine.source import gitcli

METADATA_SPELLINGS = [
    "2852039166", "0xA9FEA9FE", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376",
    "169.254.43518", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::1]", "[fe80::1]", "[fd00:ec2::254]",
    "100.100.100.200",
]


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_every_spelling_of_a_metadata_address_is_refused_in_a_repo_url(host: str) -> None:
    for url in (f"https://{host}/org/specs.git", f"ssh://git@{host}/org/specs.git"):
        with pytest.raises(gitcli.SourceConfigError, match="never connects"):
            gitcli.parse_url(url)
    if not host.startswith("["):
        with pytest.raises(gitcli.SourceConfigError, match="never connects"):
            gitcli.parse_url(f"git@{host}:org/specs.git")


@pytest.mark.parametrize("host", ["github.com", "10.0.0.7", "127.0.0.1", "[::1]",
                                  "git.internal.example", "192.168.1.20"])
def test_ordinary_hosts_still_parse(host: str) -> None:
    assert gitcli.parse_url(f"https://{host}/org/specs.git").host == host.strip("[]")


def _resolving_to(*addresses: str) -> netguard.Resolver:
    def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]
    return resolver


@pytest.mark.parametrize("answers", [("169.254.169.254",), ("93.184.216.34", "169.254.1.1"),
                                     ("::ffff:169.254.169.254",), ("fe80::1%eth0",)])
def test_a_name_resolving_to_link_local_is_refused(answers: tuple[str, ...]) -> None:
    with pytest.raises(netguard.BlockedAddress, match="resolves to"):
        netguard.resolve("metadata.attacker.example", 443, resolver=_resolving_to(*answers))
    assert netguard.resolve("ok.example", 443, resolver=_resolving_to("93.184.216.34")) \
        == [netguard.literal("93.184.216.34")]


def test_loopback_is_refused_only_when_the_caller_says_so() -> None:
    assert netguard.resolve("127.0.0.1", 80)
    with pytest.raises(netguard.BlockedAddress, match="loopback"):
        netguard.resolve("127.1", 80, allow_loopback=False)


def test_git_checks_the_host_again_when_it_connects(tmp_path: Path) -> None:
    # a Remote made without parse_url (as a mirror's stored config would be)
    remote = gitcli.Remote("https://2852039166/org/specs.git", "https", "2852039166", (), 443)
    git = gitcli.Git(home=tmp_path, remote=remote, cwd=tmp_path, timeout=5)
    with pytest.raises(gitcli.SourceConfigError, match=r"169\.254\.169\.254"):
        git.run("ls-remote", "origin", "HEAD")


def test_the_http_transport_checks_at_connect_time() -> None:
    transport = netguard.transport(resolver=_resolving_to("169.254.169.254"))
    with httpx.Client(transport=transport) as client, \
            pytest.raises(httpx.ConnectError, match="never connects"):
        client.get("http://metadata.attacker.example/latest/meta-data/")


def test_argocd_never_connects_to_the_metadata_address() -> None:
    found = argocd.statuses(ArgoCdSettings(url="http://0xA9FEA9FE", timeout=2), ["dev"])
    assert "never connects" in found["dev"].summary(), found["dev"].summary()

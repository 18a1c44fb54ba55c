"""Print the reconciler's status, recent runs and the health of every serving endpoint.

Usage::

    export LLMOPS_API_URL=http://localhost:8080      # the API (llmops serve)
    export LLMOPS_API_TOKEN=...                      # an HS256 bearer token, if required
    python examples/status.py [--wait ENDPOINT --environment ENV --timeout SECONDS]

Exit status: 0, 1 when the API refused a request, 2 when ``--wait`` timed out or
cannot succeed (health ``NotObserved``: the actuator cannot observe a cluster).
"""

from __future__ import annotations

import argparse
import os
import sys

from llmops.client import HealthNotObservedError, LlmopsApiError, LlmopsClient


def say(line: str, *, error: bool = False) -> None:
    (sys.stderr if error else sys.stdout).write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", metavar="ENDPOINT", help="wait until this endpoint is Healthy")
    parser.add_argument("--environment", help="the endpoint's environment")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    url = os.environ.get("LLMOPS_API_URL", "http://127.0.0.1:8080")
    token = os.environ.get("LLMOPS_API_TOKEN") or None
    with LlmopsClient(url, token=token) as api:
        try:
            for env in api.status():
                ready = next((c for c in env["conditions"] if c["type"] == "Ready"), None)
                applied = env["lastAppliedRevision"][:12] or "-"
                say(f"{env['environment']:<8} applied {applied:<12}"
                    f" ready={ready['status'] if ready else 'Unknown'}"
                    f" ({ready['reason'] if ready else 'no condition yet'})")
            for run in api.runs(limit=5)["items"]:
                say(f"run {run['id']:>6} {run['environment']:<8} {run['result']:<10}"
                    f" {run['revision'][:12]} {run['error']}")
            for endpoint in api.endpoints():
                say(f"{endpoint['environment']:<8} {endpoint['name']:<24}"
                    f" {endpoint['status']['health']:<12} model {endpoint['model']['name']}"
                    f"@{endpoint['model']['version']}")
            if args.wait:
                api.wait_until_healthy(args.wait, args.timeout, environment=args.environment)
                say(f"{args.wait} is Healthy")
        except LlmopsApiError as err:
            say(f"llmops API error: {err}", error=True)
            return 1
        except (TimeoutError, HealthNotObservedError) as err:
            say(str(err), error=True)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deploy, list and roll back serving endpoints with the seed's ServingClient.

Usage::

    export LLMOPS_API_URL=http://127.0.0.1:8080       # the API (llmops up / llmops serve)
    export LLMOPS_USER_ID=ada LLMOPS_USER_ROLES=ml-engineer
    export LLMOPS_USER_TEAMS=nlp-platform             # X-User-Teams (comma-separated), signed too
    export LLMOPS_PROXY_SECRET=...                    # the API's api.proxy_secret
    #   (else LLMOPS_API__PROXY_SECRET, the name the server reads it under)
    #   (or LLMOPS_API_TOKEN=... for a bearer token instead of the identity headers)

    python examples/serving_client.py deploy --model-id support-chat@1.3.0 \\
        --environment dev --route /v1/helper --name helper --min-replicas 1 --max-replicas 2
    python examples/serving_client.py list [--environment dev] [--status healthy]
    python examples/serving_client.py rollback ENDPOINT_ID [--environment dev]
    python examples/serving_client.py workflow --model-id support-chat@1.3.0 \\
        --environment dev --route /v1/helper --name helper [--wait 60]

``workflow`` deploys, waits up to ``--wait`` seconds for the endpoint to be
Healthy (a deploy is a git commit that the reconciler applies; on a review
branch it waits for the merge), checks its health and shows it in the list.
Under an actuator that cannot observe a cluster (``hydrate``, the default of
``llmops up``) the health is ``NotObserved``: it says so at once and goes on.
Exit status: 0, 1 when the API refused a request, 2 when a wait timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from llmops.client import HealthNotObservedError, LlmopsApiError, ServingClient


def say(line: str, *, error: bool = False) -> None:
    (sys.stderr if error else sys.stdout).write(line + "\n")


def client() -> ServingClient:
    url = os.environ.get("LLMOPS_API_URL", "http://127.0.0.1:8080")
    token = os.environ.get("LLMOPS_API_TOKEN") or None
    user = None if token else os.environ.get("LLMOPS_USER_ID")
    teams = os.environ.get("LLMOPS_USER_TEAMS")  # unset: no X-User-Teams header
    return ServingClient(url, user_id=user, user_roles=os.environ.get("LLMOPS_USER_ROLES", ""),
                         user_teams=teams, token=token, timeout=30.0)


def show_commit(what: str, data: dict[str, Any]) -> None:
    where = "directly on" if data["direct"] else "for review on"
    say(f"{what}: commit {data['commit'][:12]} {where} {data['branch']} ({data['reason']})")


def deploy(api: ServingClient, args: argparse.Namespace) -> dict[str, Any]:
    data = api.deploy_endpoint(model_id=args.model_id, environment=args.environment,
                               route=args.route, min_replicas=args.min_replicas,
                               max_replicas=args.max_replicas, name=args.name)
    show_commit(f"endpoint {data['name']} ({data['id']})", data)
    return data


def list_endpoints(api: ServingClient, args: argparse.Namespace) -> None:
    for endpoint in api.list_endpoints(environment=args.environment, status=args.status):
        say(f"{endpoint['environment']:<6} {endpoint['name']:<20} {endpoint['route']:<24} "
            f"{endpoint['status']['health']:<12} {endpoint['model']['name']}@"
            f"{endpoint['model']['version']}  {endpoint['id']}")


def workflow(api: ServingClient, args: argparse.Namespace) -> int:
    created = deploy(api, args)
    try:
        api.wait_for_healthy(created["id"], max_wait_seconds=args.wait, poll_interval=2.0)
        say(f"{created['name']} is Healthy")
    except HealthNotObservedError as err:
        say(f"not waiting: {err}", error=True)
    except TimeoutError as err:
        say(f"not healthy yet: {err}", error=True)
        return 2
    health = api.check_health(created["name"], environment=args.environment)
    say(json.dumps(health, indent=2))
    detail = api.get_endpoint(created["id"])
    say(f"{detail['name']}: route {detail['route']}, replicas {detail['replicas']}, "
        f"model {detail['model']['name']}@{detail['model']['version']}")
    list_endpoints(api, argparse.Namespace(environment=args.environment, status=None))
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)
    for name in ("deploy", "workflow"):
        sub = commands.add_parser(name)
        sub.add_argument("--model-id", required=True, help="UUID or name@version")
        sub.add_argument("--environment", required=True)
        sub.add_argument("--route", required=True)
        sub.add_argument("--name", help="the endpoint's name (default: the model's)")
        sub.add_argument("--min-replicas", type=int, default=1)
        sub.add_argument("--max-replicas", type=int, default=1)
        if name == "workflow":
            sub.add_argument("--wait", type=float, default=60.0, help="seconds")
    listing = commands.add_parser("list")
    listing.add_argument("--environment")
    listing.add_argument("--status", help="health, any case (healthy, degraded, ...)")
    rollback = commands.add_parser("rollback")
    rollback.add_argument("endpoint_id")
    rollback.add_argument("--environment")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with client() as api:
            if args.command == "deploy":
                deploy(api, args)
            elif args.command == "list":
                list_endpoints(api, args)
            elif args.command == "rollback":
                show_commit(f"rollback of {args.endpoint_id}",
                            api.rollback_endpoint(args.endpoint_id,
                                                  environment=args.environment))
            else:
                return workflow(api, args)
    except LlmopsApiError as err:
        say(f"llmops API error: {err}", error=True)
        return 1
    except ValueError as err:
        say(str(err), error=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

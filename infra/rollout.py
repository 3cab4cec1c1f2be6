"""Where an ECS rollout stands, for infra/deploy.sh: python3 infra/rollout.py SERVICES DESCRIBED.

SERVICES is `terraform output -json services` ({key: {name, task_definition}}), DESCRIBED is
`aws ecs describe-services --output json`. Exit 0: every service runs only the task definition
Terraform just applied, all its tasks running; 3: still rolling (stdout says where); 4: ECS
rolled a deployment back or it failed (stdout: the reason, then the service's latest events).
`aws ecs wait services-stable` cannot tell these apart: after a circuit-breaker rollback the
service is stable again, on the old task definition.
"""

from __future__ import annotations

import json
import sys
from typing import Any

STABLE, ROLLING, ROLLED_BACK = 0, 3, 4
EVENTS_SHOWN = 10


def rollout(wanted: dict[str, str], described: dict[str, Any]) -> tuple[int, list[str]]:
    """(exit status, lines to print) for services `wanted` (name -> task definition ARN)."""
    services = {s["serviceName"]: s for s in described.get("services", [])}
    waiting = []
    for name, task_definition in wanted.items():
        service = services.get(name)
        if service is None:
            waiting.append(f"{name} not described yet")
            continue
        deployments = service.get("deployments", [])
        ours = [d for d in deployments if d.get("taskDefinition") == task_definition]
        primary: dict[str, Any] = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
        failed = next((d for d in ours if d.get("rolloutState") == "FAILED"), None)
        if failed is not None or (not ours and primary.get("taskDefinition") != task_definition):
            reason = (failed or {}).get("rolloutStateReason") or (
                f"the service runs {primary.get('taskDefinition')} instead"
            )
            lines = [
                f"deploy: {name}: ECS rolled the deployment of {task_definition} back: {reason}",
                f"deploy: {name}: its latest events, oldest first:",
            ]
            # ECS lists events newest first.
            for event in reversed(service.get("events", [])[:EVENTS_SHOWN]):
                lines.append(f"  {event.get('createdAt', '')} {event.get('message', '')}")
            return ROLLED_BACK, lines
        done = (
            len(deployments) == 1
            and primary.get("taskDefinition") == task_definition
            and primary.get("rolloutState", "COMPLETED") == "COMPLETED"
            and primary.get("runningCount") == primary.get("desiredCount")
        )
        if not done:
            waiting.append(
                f"{name} {primary.get('runningCount', 0)}/{primary.get('desiredCount', 0)} tasks"
                f" running, {len(deployments)} deployment(s)"
            )
    return (ROLLING, ["; ".join(waiting)]) if waiting else (STABLE, [])


def main(argv: list[str]) -> int:
    services = json.loads(argv[1])
    wanted = {s["name"]: s["task_definition"] for s in services.values()}
    status, lines = rollout(wanted, json.loads(argv[2]))
    for line in lines:
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))

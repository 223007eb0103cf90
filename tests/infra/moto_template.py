"""A template moto's CloudFormation can create, generated from the full one.

moto creates only some resource types and evaluates only some intrinsic functions (no ``Fn::Cidr``, so no
subnets; no capacity providers, Cloud Map, RDS from secrets, ALB wiring or autoscaling). The reduced template
keeps the full template's resources of the types below, with their real properties, and drops every
resource and output that depends on a dropped resource.
"""

from __future__ import annotations

import copy
import re
from typing import Any

MOTO_TYPES = frozenset({
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::Logs::LogGroup",
    "AWS::SNS::Topic",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::Role",
    "AWS::ECS::Cluster",
})
SUB_REFERENCE = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def references(node: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref, Fn::GetAtt, names inside Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(SUB_REFERENCE.findall(text))
                if isinstance(value, list):
                    found.update(references(value[1]))
            else:
                found.update(references(value))
    elif isinstance(node, list):
        for item in node:
            found.update(references(item))
    return found


def reduce_for_moto(template: dict[str, Any]) -> dict[str, Any]:
    reduced = copy.deepcopy(template)
    resources = {name: body for name, body in reduced["Resources"].items() if body["Type"] in MOTO_TYPES}
    while True:
        dropped = [
            name for name, body in resources.items()
            if any(ref in reduced["Resources"] and ref not in resources for ref in references(body))
            or any(dep not in resources for dep in _depends_on(body))
        ]
        if not dropped:
            break
        for name in dropped:
            del resources[name]
    reduced["Resources"] = resources
    reduced["Outputs"] = {
        name: output for name, output in reduced.get("Outputs", {}).items()
        if not any(ref in template["Resources"] and ref not in resources for ref in references(output))
    }
    return reduced


def _depends_on(body: dict[str, Any]) -> list[str]:
    depends = body.get("DependsOn", [])
    return [depends] if isinstance(depends, str) else depends

"""Evaluate synthesized IAM documents on concrete requests, the way AWS decides them.

What decides, and who wrote it:
- Action and Resource matching (wildcards) and Allow/Deny per statement: moto's IAM policy engine
  (`moto.iam.access_control.IAMPolicyStatement`, moto 5.2.5), called on each statement without its
  Principal and Condition.
- Principal and Condition: evaluated here, because moto's engine only knows the `StringEquals` operator
  (it silently passes every other one, so an `ArnLike` that can never match would look fine), and
  checks conditions before resources, turning a non-matching Allow into a Deny. Each operator the
  templates use is implemented after the IAM User Guide ("IAM JSON policy elements: Condition
  operators"): a key absent from the request makes the condition false; an unknown operator fails the test.
- Combination: an explicit Deny wins, otherwise any Allow allows (IAM policy evaluation logic, single account).
Action names are compared case-insensitively, as IAM does (CDK writes `s3:getObject` for CallAwsService).

`Resolver` turns the CloudFormation intrinsics of a synthesized template into the concrete values a
deployed stack would have, with the same test names tests/pipeline/render.py gives the definition.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from tests.pipeline.render import ACCOUNT, REGION, RenderValues

PARTITION = "aws"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: each of the six colon-separated ARN parts is matched with * and ? wildcards."""
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(fnmatch.fnmatchcase(v, p) for p, v in zip(p_parts, v_parts, strict=True))


_OPERATORS = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringLike": lambda expected, actual: fnmatch.fnmatchcase(actual, expected),
    "ArnEquals": lambda expected, actual: actual == expected,
    "ArnLike": _arn_like,
    "Bool": lambda expected, actual: str(actual).lower() == str(expected).lower(),
}


def conditions_hold(conditions: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, keys in conditions.items():
        if operator not in _OPERATORS:
            raise AssertionError(f"condition operator {operator} is not implemented by the test evaluator: add it")
        for key, expected in keys.items():
            if key not in context:
                return False
            if not any(_OPERATORS[operator](str(e), str(context[key])) for e in _as_list(expected)):
                return False
    return True


def _principal_matches(principal: Any, caller: dict[str, str] | None) -> bool:
    if principal is None:  # identity policy: the caller is the role it is attached to
        return True
    # "*" and {"AWS": "*"} are the same in a resource policy: every principal, service principals included.
    if principal == "*" or "*" in _as_list(principal.get("AWS", [])):
        return True
    if caller is None:
        return False
    return any(value in _as_list(principal.get(kind, [])) or principal.get(kind) == "*" for kind, value in caller.items())


@dataclass
class Decision:
    allowed: bool
    allow_sids: list[str] = field(default_factory=list)
    deny_sids: list[str] = field(default_factory=list)


class PolicyEvaluator:
    """One or more policy documents (already resolved to plain strings)."""

    def __init__(self, statements: list[dict[str, Any]]) -> None:
        self.statements = statements

    @classmethod
    def from_documents(cls, documents: list[dict[str, Any]]) -> PolicyEvaluator:
        return cls([s for doc in documents for s in _as_list(doc["Statement"])])

    def decide(
        self, action: str, resource: str, context: dict[str, str] | None = None, principal: dict[str, str] | None = None
    ) -> Decision:
        decision = Decision(False)
        for index, statement in enumerate(self.statements):
            if not _principal_matches(statement.get("Principal"), principal):
                continue
            if "Condition" in statement and not conditions_hold(statement["Condition"], context or {}):
                continue
            core = {k: v for k, v in statement.items() if k not in ("Principal", "Condition", "Sid")}
            for key in ("Action", "NotAction"):
                if key in core:
                    core[key] = [a.lower() for a in _as_list(core[key])]
            result = IAMPolicyStatement(core).is_action_permitted(action.lower(), resource)
            sid = statement.get("Sid", f"#{index}")
            if result == PermissionResult.DENIED:
                decision.deny_sids.append(sid)
            elif result == PermissionResult.PERMITTED:
                decision.allow_sids.append(sid)
        decision.allowed = bool(decision.allow_sids) and not decision.deny_sids
        return decision

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None, principal: dict[str, str] | None = None) -> bool:
        return self.decide(action, resource, context, principal).allowed


class Resolver:
    """CloudFormation intrinsics of the pipeline/storage/serving templates -> concrete test values."""

    def __init__(self, templates: dict[str, dict[str, Any]], values: RenderValues | None = None) -> None:
        self.templates = templates  # stack name -> template
        self.values = values or RenderValues()

    def _find(self, logical_id: str) -> tuple[str, dict[str, Any]]:
        hits = [(name, t["Resources"][logical_id]) for name, t in self.templates.items() if logical_id in t.get("Resources", {})]
        assert len(hits) == 1, f"logical id {logical_id}: {len(hits)} matches"
        return hits[0]

    def ref(self, logical_id: str) -> str:
        _, resource = self._find(logical_id)
        kind, props = resource["Type"], resource.get("Properties", {})
        v = self.values
        if kind == "AWS::S3::Bucket":
            lower = logical_id.lower()
            if lower.startswith("artifacts"):
                return v.artifacts_bucket
            if lower.startswith("data"):
                return v.data_bucket
            return f"invmon-test-{lower}"
        if kind == "AWS::SNS::Topic":
            return v.topic_arn
        if kind == "AWS::CloudWatch::Alarm":
            return props.get("AlarmName", logical_id)
        if kind == "AWS::IAM::Role":
            return logical_id
        if kind == "AWS::Logs::LogGroup":
            return props.get("LogGroupName", logical_id)
        if kind == "AWS::KMS::Key":
            return self.key_arn(logical_id).rsplit("/", 1)[1]
        if kind == "AWS::Lambda::Function":
            return logical_id
        if kind == "AWS::StepFunctions::StateMachine":
            return self.get_att(logical_id, "Arn")
        raise AssertionError(f"no test value for Ref {logical_id} ({kind})")

    def key_arn(self, logical_id: str) -> str:
        stack, _ = self._find(logical_id)
        if "storage" in stack:
            return self.values.data_key_arn
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical_id.lower()}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        _, resource = self._find(logical_id)
        kind = resource["Type"]
        if attribute == "Arn":
            if kind == "AWS::IAM::Role":
                return self.values.role_arn(logical_id)
            if kind == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{self.ref(logical_id)}"
            if kind == "AWS::KMS::Key":
                return self.key_arn(logical_id)
            if kind == "AWS::CloudWatch::Alarm":
                return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{self.ref(logical_id)}"
            if kind == "AWS::Logs::LogGroup":
                return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{self.ref(logical_id)}:*"
            if kind == "AWS::SNS::Topic":
                return self.values.topic_arn
            if kind == "AWS::StepFunctions::StateMachine":
                return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{logical_id}"
            if kind == "AWS::Lambda::Function":
                return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
        if attribute == "TopicArn" and kind == "AWS::SNS::Topic":
            return self.values.topic_arn
        raise AssertionError(f"no test value for GetAtt {logical_id}.{attribute} ({kind})")

    def _output(self, name: str) -> Any:
        for template in self.templates.values():
            for output_name, output in template.get("Outputs", {}).items():
                if output_name == name or output.get("Export", {}).get("Name") == name:
                    return output["Value"]
        raise AssertionError(f"no stack output {name}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self.resolve(v) for k, v in value.items()}
        ((fn, arg),) = value.items()
        if fn == "Ref":
            pseudo = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}
            return pseudo[arg] if arg in pseudo else self.ref(arg)
        if fn == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get_att(logical_id, attribute)
        if fn == "Fn::Join":
            separator, parts = arg
            return separator.join(str(self.resolve(p)) for p in parts)
        if fn == "Fn::GetStackOutput":
            return self.resolve(self._output(arg["OutputName"]))
        if fn == "Fn::ImportValue":
            return self.resolve(self._output(arg))
        if fn == "Fn::Sub" and isinstance(arg, str):
            text = arg
            for name, val in (("AWS::Partition", PARTITION), ("AWS::Region", REGION), ("AWS::AccountId", ACCOUNT)):
                text = text.replace("${" + name + "}", val)
            assert "${" not in text, f"unresolved Fn::Sub {arg}"
            return text
        raise AssertionError(f"no test value for {json.dumps(value)}")


def role_policy_documents(template: dict[str, Any], role_prefix: str, resolver: Resolver) -> list[dict[str, Any]]:
    """Every inline policy (AWS::IAM::Policy) attached to the role whose logical id starts with role_prefix."""
    documents = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        roles = [r["Ref"] for r in resource["Properties"].get("Roles", [])]
        if any(r.startswith(role_prefix) for r in roles):
            documents.append(resolver.resolve(resource["Properties"]["PolicyDocument"]))
    assert documents, f"no policy attached to a role {role_prefix}*"
    return documents

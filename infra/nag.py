"""cdk-nag, applied once to the whole app, and the one way to acknowledge a finding.

Synth fails on any unacknowledged AwsSolutions error (see app.py). Every acknowledgment names one
rule, the resource it applies to, and why the finding does not apply or is accepted.
"""

from __future__ import annotations

from aws_cdk import Aspects, CfnResource
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct


def apply_nag(app: IConstruct) -> None:
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))


def acknowledge(construct: IConstruct, rule_id: str, reason: str, applies_to: list[str | RegexAppliesTo] | None = None) -> None:
    """Acknowledge one finding on one construct (and its children) with a reason."""
    if len(reason) < 20:
        raise ValueError(f"acknowledgment of {rule_id} needs a real reason (got {reason!r})")
    suppression = NagPackSuppression(id=rule_id, reason=reason, applies_to=applies_to)
    NagSuppressions.add_resource_suppressions(construct, [suppression], apply_to_children=True)


def checkov_skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Skip one checkov check on the construct's CloudFormation resource, inline in its Metadata, with the reason.

    checkov reads `Metadata: {checkov: {skip: [{id, comment}]}}` on the resource; several skips accumulate.
    """
    if len(reason) < 20:
        raise ValueError(f"checkov skip {check_id} needs a real reason (got {reason!r})")
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to carry a checkov skip")
    metadata = resource.get_metadata("checkov") or {"skip": []}
    skips = [s for s in metadata["skip"] if s["id"] != check_id] + [{"id": check_id, "comment": reason}]
    resource.add_metadata("checkov", {"skip": skips})

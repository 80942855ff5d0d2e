"""The one cdk-nag assertion helper: the unacknowledged AwsSolutions findings left on a synthesized stack."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk.assertions import Annotations, Match

AWS_SOLUTIONS = Match.string_like_regexp("AwsSolutions-.*")


def nag_findings(stack: Stack, *, warnings: bool = True) -> list[str]:
    """'rule: message' of every unacknowledged error (and warning) cdk-nag left on the stack after app.synth()."""
    annotations = Annotations.from_stack(stack)
    found = annotations.find_error("*", AWS_SOLUTIONS) + (annotations.find_warning("*", AWS_SOLUTIONS) if warnings else [])
    return [str(message.entry.data) for message in found]


def nag_rules(stack: Stack) -> set[str]:
    """The rule ids (AwsSolutions-S1, ...) of the stack's unacknowledged errors."""
    return {finding.split(":")[0] for finding in nag_findings(stack, warnings=False)}

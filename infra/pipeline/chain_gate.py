"""The gate chain: Evaluate -> read evaluation.json and gate.json -> Gate: deploy? -> (refusal: notify, keep).

The decision is made once, in the Evaluate job, by training_code/deploy_rule.py (the rule local mode applies
too), from the run's deploy mode and the serving record's accuracy that this job is given. The Gate only
reads it: `deploy` picks the branch and `reason` is the refusal's message.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import aws_stepfunctions as sfn

from infra.pipeline import sagemaker_params as params
from infra.pipeline.layout import EVALUATION_FILE, GATE_FILE, RUNS_PREFIX
from infra.pipeline.states import C, Segment, StateBuilder

DECISION = "$.gate.decision"
# What later states read from gate.json: checked before any of them runs.
DECISION_FIELDS = {"deploy": C.is_boolean, "reason": C.is_string, "accuracy": C.is_numeric, "majority_baseline": C.is_numeric}


def gate_chain(b: StateBuilder) -> Segment:
    evaluate = b.task(
        "Evaluate",
        "sagemaker:createProcessingJob.sync",
        params.evaluate_job(b.s),
        result_selector={"job.$": "$.ProcessingJobName"},
        result_path="$.evaluate",
        job_kind="evaluation",
    )
    read_evaluation = b.read_json("Read evaluation", {"Key.$": _evaluate_key(EVALUATION_FILE)}, "$.evaluation", "report")
    read_decision = b.read_json("Read gate decision", {"Key.$": _evaluate_key(GATE_FILE)}, "$.gate", "decision")
    decision_readable = b.choice("Gate decision readable?")
    decision_unreadable = b.failure_pass(
        "Gate decision unreadable",
        f"States.Format('{GATE_FILE} of evaluation job {{}} lacks a boolean deploy, a string reason or a numeric accuracy or "
        "majority_baseline: {}', $.evaluate.job, States.JsonToString($.gate.decision))",
    )
    gate = b.choice("Gate: deploy?")
    notify_refusal = b.task(
        "Notify refusal",
        "sns:publish",
        {
            "TopicArn": b.s.topic_arn,
            "Subject.$": f"States.Format('{b.s.prefix}: run {{}} trained, not deployed', $.run.id)",
            "Message.$": "States.Format('Run {} trained {} but did not deploy it: {}. Evaluation: {}', "
            f"$.run.id, $.training.job, {DECISION}.reason, States.JsonToString($.evaluation.report))",
        },
        result_path="$.notified",
    )
    kept = b.succeed("Kept the serving model")

    evaluate.next(read_evaluation).next(read_decision).next(decision_readable)
    checks = [check for field, is_kind in DECISION_FIELDS.items() for check in _present_and(is_kind, f"{DECISION}.{field}")]
    decision_readable.when(C.and_(*checks), gate)
    decision_readable.otherwise(decision_unreadable)
    gate.otherwise(notify_refusal)
    notify_refusal.next(kept)

    def connect(deploy: sfn.IChainable) -> None:
        gate.when(C.boolean_equals(f"{DECISION}.deploy", True), deploy)

    return Segment(evaluate, connect)


def _evaluate_key(file_name: str) -> str:
    """The S3 key of a file the Evaluate job writes, for this run (States.Format on $.run.id)."""
    return f"States.Format('{RUNS_PREFIX}{{}}/evaluate/{file_name}', $.run.id)"


def _present_and(is_kind: Callable[[str], sfn.Condition], path: str) -> list[sfn.Condition]:
    return [C.is_present(path), is_kind(path)]

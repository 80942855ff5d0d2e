"""How the definition's states are made: Tasks with retries and a failure path, failure messages, JSON reads.

Every Task catches every error into "<step> failed" -> Notify failure -> Run failed, naming the step (a failed
SageMaker job is described first, so the message leads with the job, its FailureReason and a console link: see
`describe_failed_job`, which the Verify bins state machine uses too).
The chain builders (chain_*.py) make their states through `StateBuilder` and hand the next chain its entry
through a `Segment`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.pipeline.settings import DefinitionSettings

C = sfn.Condition
# Errors that clear by themselves: retried with backoff. Everything else goes to the failure path.
TRANSIENT_ERRORS = [
    "SageMaker.ThrottlingException",
    "ThrottlingException",
    "SageMaker.InternalFailure",
    "ApplicationAutoScaling.ConcurrentUpdateException",
]


@dataclass(frozen=True)
class JobKind:
    label: str
    describe: str  # the aws-sdk action that describes it
    name_field: str
    status_field: str
    console: str  # the SageMaker console's path segment

    def console_link(self) -> str:
        """The job's console page as a States.Format template: its one {} is the job's name."""
        return f"https://{Aws.REGION}.console.aws.amazon.com/sagemaker/home?region={Aws.REGION}#/{self.console}/{{}}"


PROCESSING = JobKind("processing job", "describeProcessingJob", "ProcessingJobName", "ProcessingJobStatus", "processing-jobs")
# By the key of the job's name under $.names (the training pipeline's; Verify bins' transform).
JOBS = {
    "prepare": PROCESSING,
    "evaluation": PROCESSING,
    "tuning": JobKind(
        "tuning job", "describeHyperParameterTuningJob", "HyperParameterTuningJobName", "HyperParameterTuningJobStatus", "hyper-tuning-jobs"
    ),
    "training": JobKind("training job", "describeTrainingJob", "TrainingJobName", "TrainingJobStatus", "jobs"),
    "transform": JobKind("transform job", "describeTransformJob", "TransformJobName", "TransformJobStatus", "transform-jobs"),
}


@dataclass(frozen=True)
class Format:
    """A States.Format template and the paths of its {} arguments, in order."""

    template: str
    args: tuple[str, ...] = ()

    def __add__(self, other: Format) -> Format:
        return Format(self.template + other.template, self.args + other.args)

    def expression(self) -> str:
        return f"States.Format('{self.template}', {', '.join(self.args)})"


# Makes a Task (retried like the machine's other calls, no Catch): (state name, integration, Parameters, ResultPath).
TaskMaker = Callable[[str, str, dict[str, Any], str], sfn.CustomState]
# Makes the Pass that writes the machine's $.failure and goes to its Notify failure:
# (state name, what the description says about the job, whether that includes the job's FailureReason).
JobFailurePass = Callable[[str, Format, bool], sfn.Pass]


def has_fraction(text_path: str) -> sfn.Condition:
    """True when the JSON text at `text_path` (States.JsonToString of numbers) holds a fraction or an exponent:
    Choice rules cannot tell 2 from 2.5, a number's JSON text can."""
    return C.or_(C.string_matches(text_path, "*.*"), C.string_matches(text_path, "*e*"))


def describe_failed_job(
    scope: Construct,
    task: sfn.CustomState,
    step: str,
    job: JobKind,
    name_path: str,
    *,
    make_task: TaskMaker,
    job_failed: JobFailurePass,
    fallback: sfn.IChainable,
) -> None:
    """`task`'s every error -> "Describe failed <step> job" -> "<step> job failed" (with the job's FailureReason) or
    "<step> job failed without reason"; a describe that fails itself goes to `fallback` (the plain failure message).

    Both state machines (the training pipeline, Verify bins) build their SageMaker job failures here.
    """
    # The .sync Cause is the whole Describe* answer (kB, FailureReason deep inside): lead with what a
    # person needs (step, job, reason, console link); the full description is one click away.
    describe = make_task(
        f"Describe failed {step} job", f"aws-sdk:sagemaker:{job.describe}", {f"{job.name_field}.$": name_path}, "$.failedJob"
    )
    describe.add_catch(fallback, errors=["States.ALL"], result_path="$.describeError")
    task.add_catch(describe, errors=["States.ALL"], result_path="$.error")
    has_reason = sfn.Choice(scope, f"{step} job has a FailureReason?")
    status = f"$.failedJob.{job.status_field}"
    with_reason = job_failed(
        f"{step} job failed",
        Format(
            f"{job.label} {{}} ended {{}}. FailureReason: {{}} Console: {job.console_link()}",
            (name_path, status, "$.failedJob.FailureReason", name_path),
        ),
        True,
    )
    without_reason = job_failed(
        f"{step} job failed without reason",
        Format(f"{job.label} {{}} is {{}}. Console: {job.console_link()}", (name_path, status, name_path)),
        False,
    )
    describe.next(has_reason)
    has_reason.when(C.and_(C.is_present("$.failedJob.FailureReason"), C.is_string("$.failedJob.FailureReason")), with_reason)
    has_reason.otherwise(without_reason)


@dataclass(frozen=True)
class Segment:
    """One chain of the definition: its first state, and how every way out of it leads to the next chain."""

    start: sfn.IChainable
    connect: Callable[[sfn.IChainable], object]


def final_segment(start: sfn.IChainable) -> Segment:
    """A chain that ends the run itself (Succeed / Fail): nothing follows it."""

    def no_exit(_following: sfn.IChainable) -> None:
        raise ValueError("the deploy chain ends the run: no chain can follow it")

    return Segment(start, no_exit)


class StateBuilder:
    """Makes states inside `scope` (the definition construct); owns the failure path every Task catches into."""

    def __init__(self, scope: Construct, settings: DefinitionSettings) -> None:
        self.scope = scope
        self.s = settings
        self.run_failed = sfn.Fail(scope, "Run failed", error="PipelineFailed", cause_path="$.failure.message")
        self.notify_failure = self.task(
            "Notify failure",
            "sns:publish",
            {
                "TopicArn": settings.topic_arn,
                "Subject.$": f"States.Format('{settings.prefix}: run {{}} failed at {{}}', $.run.id, $.failure.step)",
                "Message.$": "$.failure.message",
            },
            result_path="$.notified",
            catch=False,
        )
        self.notify_failure.add_catch(self.run_failed, errors=["States.ALL"], result_path="$.notifyError")
        self.notify_failure.next(self.run_failed)

    # --- plain states ---------------------------------------------------------------------------------------

    def pass_state(self, name: str, **props: Any) -> sfn.Pass:
        return sfn.Pass(self.scope, name, **props)

    def choice(self, name: str) -> sfn.Choice:
        return sfn.Choice(self.scope, name)

    def fail(self, name: str, **props: Any) -> sfn.Fail:
        return sfn.Fail(self.scope, name, **props)

    def succeed(self, name: str) -> sfn.Succeed:
        return sfn.Succeed(self.scope, name)

    def wait(self, name: str, seconds: int) -> sfn.Wait:
        return sfn.Wait(self.scope, name, time=sfn.WaitTime.duration(Duration.seconds(seconds)))

    # --- tasks ------------------------------------------------------------------------------------------------

    def task(
        self,
        step: str,
        resource: str,
        parameters: dict[str, Any],
        *,
        result_selector: dict[str, Any] | None = None,
        result_path: str,
        catch: bool = True,
        job_kind: str | None = None,
    ) -> sfn.CustomState:
        """A Task on `arn:...:states:::<resource>`; non-.sync calls retry TRANSIENT_ERRORS; `catch` adds the failure path."""
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::{resource}",
            "Parameters": parameters,
            "ResultPath": result_path,
        }
        if result_selector:
            state["ResultSelector"] = result_selector
        task = sfn.CustomState(self.scope, step, state_json=state)
        if not resource.endswith(".sync"):
            task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(5), max_attempts=4, backoff_rate=2)
        if catch:
            self.catch(task, step, job_kind=job_kind)
        return task

    def read_json(
        self, step: str, key: dict[str, str], result_path: str, field: str, *, catch: bool = True, extra: dict[str, Any] | None = None
    ) -> sfn.CustomState:
        """GetObject a JSON file of the artifacts bucket into `result_path`.`field` (the body parsed with States.StringToJson).

        The parse happens in the Task's ResultSelector, where the Task's Catch applies, not in a Pass
        (which cannot Catch). What the parsed value holds is checked by a Choice before any use.
        """
        return self.task(
            step,
            "aws-sdk:s3:getObject",
            {"Bucket": self.s.artifacts_bucket, **key},
            result_selector={f"{field}.$": "States.StringToJson($.Body)", **(extra or {})},
            result_path=result_path,
            catch=catch,
        )

    # --- the failure path -------------------------------------------------------------------------------------

    def failure_pass(self, name: str, message: str, *, error_path: str | None = None, step: str | None = None) -> sfn.Pass:
        """A Pass that writes $.failure (step, message, error) and goes to Notify failure."""
        step = step or name.removesuffix(" failed")
        failure: dict[str, Any] = {"step": step, "message.$": message}
        failure["error.$" if error_path else "error"] = error_path or name
        state = sfn.Pass(self.scope, name, parameters=failure, result_path="$.failure")
        state.next(self.notify_failure)
        return state

    def catch(self, task: sfn.CustomState, step: str, *, hint: str = "", job_kind: str | None = None) -> None:
        """States.ALL -> "<step> failed" -> Notify failure. A SageMaker job step describes the job first."""
        failed = self.failure_pass(
            f"{step} failed",
            f"States.Format('Step {step} failed with {{}}: {hint}{{}}', $.error.Error, $.error.Cause)",
            error_path="$.error.Error",
        )
        if job_kind is None:
            task.add_catch(failed, errors=["States.ALL"], result_path="$.error")
            return
        describe_failed_job(
            self.scope,
            task,
            step,
            JOBS[job_kind],
            f"$.names.{job_kind}",
            make_task=self._describe_task,
            job_failed=self._job_failed_pass(step),
            fallback=failed,
        )

    def _describe_task(self, step: str, resource: str, parameters: dict[str, Any], result_path: str) -> sfn.CustomState:
        return self.task(step, resource, parameters, result_path=result_path, catch=False)

    def _job_failed_pass(self, step: str) -> JobFailurePass:
        """The message leads with the step; the error (and, without a FailureReason, the raw Cause) follows."""

        def job_failed(name: str, summary: Format, has_reason: bool) -> sfn.Pass:
            tail = Format(" (error {})", ("$.error.Error",)) if has_reason else Format(" Error {}: {}", ("$.error.Error", "$.error.Cause"))
            message = Format(f"Step {step} failed: ") + summary + tail
            return self.failure_pass(name, message.expression(), error_path="$.error.Error", step=step)

        return job_failed

"""The Verify bins states (docs/verification.md):

    Check input -> Defaults -> Merge defaults -> Make verify id -> Read serving record -> Serving record names a model?
    -> Prepare batches (Processing: verify_prepare.py) -> Transform (Batch Transform .sync on the serving model)
    -> Write report (Processing: verify_report.py) -> Read summary -> Notify summary -> Verified
Any failure (a failed Notify summary included: the run did not tell anyone) -> "<step>: failed" -> Notify failure
-> Verify failed, also when Notify failure itself fails (as the training pipeline). A failed SageMaker job is described first
(infra/pipeline/states.py's describe_failed_job, as in the training pipeline), so the message leads with the job,
its FailureReason and a console link; a describe that fails itself falls back to "<step>: failed".
"""

from __future__ import annotations

import verification
from aws_cdk import Aws, Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.pipeline.layout import SERVING_RECORD_KEY
from infra.pipeline.states import JOBS, PROCESSING, TRANSIENT_ERRORS, Format, JobFailurePass, JobKind, describe_failed_job, has_fraction
from infra.verification import jobs
from infra.verification.props import VerifyBinsProps

C = sfn.Condition
INPUT_FIELDS = ("photos", "records", "instanceType", "instanceCount", "views")
MAX_INSTANCE_COUNT = 20
# The SageMaker job each .sync integration runs: described when its Task fails.
SYNC_JOBS: dict[str, JobKind] = {
    "sagemaker:createProcessingJob.sync": PROCESSING,
    "sagemaker:createTransformJob.sync": JOBS["transform"],
}


class VerifyBinsDefinition(Construct):
    """The states, one method per step; `start` is the first. The chain in __init__ reads top to bottom."""

    def __init__(self, scope: Construct, construct_id: str, *, props: VerifyBinsProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        s = props.settings
        self.failed = self._failure_chain()
        first_state, check_input = self._check_input()
        has_model = sfn.Choice(self, "Serving record names a model?")
        prepare = self._task("Prepare batches", "sagemaker:createProcessingJob.sync", jobs.prepare_job(s), "$.prepare")

        merge_defaults, count_is_whole = self._merge_defaults()
        check_input.otherwise(merge_defaults)
        count_is_whole.otherwise(self._make_id().next(self._read_serving_record()).next(has_model))
        has_model.when(C.and_(C.is_present("$.serving.record.model"), C.is_string("$.serving.record.model")), prepare)
        has_model.otherwise(self._failure("Serving record without model", "ServingRecordInvalid", "States.JsonToString($.serving.record)"))
        (
            prepare.next(self._task("Transform", "sagemaker:createTransformJob.sync", jobs.transform_job(s), "$.transform"))
            .next(self._task("Write report", "sagemaker:createProcessingJob.sync", jobs.report_job(s), "$.report"))
            .next(self._read_summary())
            .next(self._notify_summary())
            .next(sfn.Succeed(self, "Verified"))
        )
        self.start = first_state

    # --- input ------------------------------------------------------------------------------------------------
    def _allowed_uri(self, path: str) -> sfn.Condition:
        """An s3:// URI in a bucket the jobs may read: the project's data bucket or the public dataset bucket."""
        buckets = (self.props.data_bucket.bucket_name, self.props.dataset_bucket_name)
        return C.and_(C.is_string(path), C.or_(*(C.string_matches(path, f"s3://{bucket}/*") for bucket in buckets)))

    def _reject(self, name: str, cause: str) -> sfn.Pass:
        reject = sfn.Pass(
            self, name, parameters={"step": "Check input", "error": "InvalidExecutionInput", "cause": cause}, result_path="$.failure"
        )
        reject.next(self.failed)
        return reject

    def _check_shape(self) -> tuple[sfn.Pass, sfn.Choice]:
        """An object with known field names only (infra/pipeline/input_schema.py explains the two tricks): JsonToString
        never fails, and the input merged with {field: 0, ...} on top has one ':' per field name, so more pieces
        after splitting on ':' means a name that is not a field."""
        schema = dict.fromkeys(INPUT_FIELDS, 0)
        describe = sfn.Pass(self, "Describe input", parameters={"input.$": "$", "text.$": "States.JsonToString($)", "schema": schema})
        is_object = sfn.Choice(self, "Input is an object?")
        describe.next(is_object)
        is_object.when(
            C.not_(C.string_matches("$.text", "{*")),
            self._reject(
                "Input rejected: not an object", 'the execution input must be a JSON object like {"photos": "s3://bucket/prefix/"}'
            ),
        )
        count = sfn.Pass(
            self,
            "Count input fields",
            parameters={
                "pieces.$": "States.ArrayLength(States.StringSplit(States.JsonToString(States.JsonMerge($.input, $.schema, false)), ':'))"
            },
            result_path="$.fields",
        )
        is_object.otherwise(count)
        known = sfn.Choice(self, "Input field names known?")
        count.next(known)
        known.when(
            C.number_greater_than("$.fields.pieces", len(INPUT_FIELDS) + 1),
            self._reject(
                "Input rejected: unknown field", f"the execution input may hold only {', '.join(INPUT_FIELDS)}: check the spelling"
            ),
        )
        return describe, known

    def _check_input(self) -> tuple[sfn.Pass, sfn.Choice]:
        """(the first state, the last Choice: its `otherwise` is the way on for a good input)."""
        first, known = self._check_shape()
        data_bucket = self.props.data_bucket.bucket_name
        where = f"s3://{data_bucket}/... or s3://{self.props.dataset_bucket_name}/..."
        rules = [
            (
                C.not_(C.is_present("$.input.photos")),
                "photos is required: the s3:// prefix of the bin photos, laid out like the dataset bucket",
            ),
            (
                # Guarded like every other field (infra/pipeline/input_schema.py): a Choice rule on a missing path fails the run.
                C.and_(C.is_present("$.input.photos"), C.not_(self._allowed_uri("$.input.photos"))),
                f"photos must be an s3:// prefix under {where} (the jobs may read only those)",
            ),
            (
                C.and_(
                    C.is_present("$.input.records"),
                    C.not_(C.or_(self._allowed_uri("$.input.records"), C.string_equals("$.input.records", ""))),
                ),
                f"records must be the s3:// URI of a CSV (bin_id,expected_count) under {where}, or absent for metadata/<id>.json",
            ),
            (
                C.and_(
                    C.is_present("$.input.instanceType"),
                    C.not_(C.and_(C.is_string("$.input.instanceType"), C.string_matches("$.input.instanceType", "ml.*"))),
                ),
                "instanceType must be a SageMaker instance type like ml.m5.xlarge",
            ),
            (
                C.and_(
                    C.is_present("$.input.instanceCount"),
                    C.not_(
                        C.and_(
                            C.is_numeric("$.input.instanceCount"),
                            C.number_greater_than_equals("$.input.instanceCount", 1),
                            C.number_less_than_equals("$.input.instanceCount", MAX_INSTANCE_COUNT),
                        )
                    ),
                ),
                f"instanceCount must be a whole number from 1 to {MAX_INSTANCE_COUNT}",
            ),
            (
                C.and_(
                    C.is_present("$.input.views"),
                    C.not_(C.and_(C.is_string("$.input.views"), C.or_(*(C.string_equals("$.input.views", v) for v in verification.VIEWS)))),
                ),
                f"views must be one of {', '.join(verification.VIEWS)}: one serves each photo alone, served the model's test-time flips too",
            ),
        ]
        choice = sfn.Choice(self, "Check input")
        known.otherwise(choice)
        for index, (condition, message) in enumerate(rules):
            choice.when(condition, self._reject(f"Input rejected {index + 1}", message))
        return first, choice

    def _merge_defaults(self) -> tuple[sfn.Pass, sfn.Choice]:
        """(the first state after the input check, the Choice whose `otherwise` goes on with a whole instance count)."""
        cfg = self.props.settings.config
        defaults = sfn.Pass(
            self,
            "Defaults",
            parameters={
                "records": "",
                "instanceType": cfg.verify_instance_type,
                "instanceCount": cfg.verify_instance_count,
                "views": cfg.verify_views,
            },
            result_path="$.defaults",
        )
        # The input's own fields override the defaults; anything else in the input is not read. $.input is the
        # execution input, checked to be an object by "Input is an object?" (JsonMerge fails the run on anything else).
        merge = sfn.Pass(self, "Merge defaults", parameters={"settings.$": "States.JsonMerge($.defaults, $.input, false)"})
        # Choice rules cannot tell 2 from 2.5; the count's JSON text can (as the training pipeline checks its counts).
        count_as_text = sfn.Pass(
            self,
            "Write instance count as text",
            parameters={"text.$": "States.JsonToString($.settings.instanceCount)"},
            result_path="$.count",
        )
        whole = sfn.Choice(self, "Instance count whole?")
        whole.when(
            has_fraction("$.count.text"),
            self._reject(
                "Input rejected: whole number", f"instanceCount must be a whole number from 1 to {MAX_INSTANCE_COUNT}, such as 2, not 2.5"
            ),
        )
        defaults.next(merge).next(count_as_text).next(whole)
        return defaults, whole

    def _make_id(self) -> sfn.Chain:
        make_id = sfn.Pass(
            self,
            "Make verify id",
            # 8 hex characters of a fresh UUID: unique per run, short enough for SageMaker's name limits.
            parameters={"id.$": "States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0)"},
            result_path="$.verify",
        )
        s = self.props.settings
        describe = sfn.Pass(
            self,
            "Name jobs and paths",
            parameters={"names": jobs.names(s.prefix), "paths": jobs.paths(s.artifacts_bucket)},
            result_path="$.run",
        )
        flatten = sfn.Pass(
            self,
            "Run layout",
            parameters={"settings.$": "$.settings", "verify.$": "$.verify", "names.$": "$.run.names", "paths.$": "$.run.paths"},
        )
        make_id.next(describe).next(flatten)
        return sfn.Chain.custom(make_id, [flatten], flatten)

    # --- jobs ---------------------------------------------------------------------------------------------------
    def _read_serving_record(self) -> sfn.CustomState:
        """The model that serves now (written by the training pipeline's Record serving model step)."""
        return self._task(
            "Read serving record",
            "aws-sdk:s3:getObject",
            {"Bucket": self.props.settings.artifacts_bucket, "Key": SERVING_RECORD_KEY},
            "$.serving",
            result_selector={"record.$": "States.StringToJson($.Body)"},
            absent=("S3.NoSuchKeyException", "no model serves yet: run the training pipeline until it deploys one, then verify"),
        )

    def _read_summary(self) -> sfn.CustomState:
        return self._task(
            "Read summary",
            "aws-sdk:s3:getObject",
            {
                "Bucket": self.props.settings.artifacts_bucket,
                "Key.$": f"States.Format('{jobs.VERIFY_PREFIX}{{}}/report/summary.json', $.verify.id)",
            },
            "$.summary",
            result_selector={"report.$": "States.StringToJson($.Body)"},
        )

    def _notify_summary(self) -> sfn.CustomState:
        prefix = self.props.settings.prefix
        return self._task(
            "Notify summary",
            "sns:publish",
            {
                "TopicArn": self.props.settings.topic_arn,
                "Subject.$": f"States.Format('{prefix}: bins verified ({{}})', $.verify.id)",
                "Message.$": "States.Format('Verify bins {} checked the photos under {}. Summary: {} Report: {}report.html (results.csv, summary.json beside it).', "
                "$.verify.id, $.settings.photos, States.JsonToString($.summary.report), $.paths.report)",
            },
            "$.notified",
        )  # its failure -> "Notify summary: failed" -> Notify failure -> Verify failed: an unannounced run is not a success

    # --- failure ------------------------------------------------------------------------------------------------
    def _failure_chain(self) -> sfn.CustomState:
        prefix = self.props.settings.prefix
        notify = sfn.CustomState(
            self,
            "Notify failure",
            state_json={
                "Type": "Task",
                "Resource": _integration("sns:publish"),
                "Parameters": {
                    "TopicArn": self.props.settings.topic_arn,
                    "Subject": f"{prefix}: Verify bins failed",
                    "Message.$": "States.Format('Verify bins failed at {}: {} ({}). Input: {}', $.failure.step, $.failure.cause, $.failure.error, "
                    "States.JsonToString($$.Execution.Input))",
                },
                "ResultPath": "$.notified",
            },
        )
        verify_failed = sfn.Fail(self, "Verify failed", error="VerifyBinsFailed", cause_path="$.failure.cause")
        # As the training pipeline's: a failed publish still ends in Verify failed, with the failure it was to report.
        notify.add_catch(verify_failed, errors=["States.ALL"], result_path="$.notifyError")
        notify.next(verify_failed)
        return notify

    def _failure(self, name: str, error: str, cause_path: str) -> sfn.Pass:
        """A Pass that describes what went wrong in $.failure, then Notify failure."""
        state = sfn.Pass(self, name, parameters={"step": name, "error": error, "cause.$": cause_path}, result_path="$.failure")
        state.next(self.failed)
        return state

    def _task(
        self,
        name: str,
        integration: str,
        parameters: dict,
        result_path: str,
        *,
        result_selector: dict | None = None,
        absent: tuple[str, str] | None = None,
        catch: bool = True,
    ) -> sfn.CustomState:
        state: dict = {"Type": "Task", "Resource": _integration(integration), "Parameters": parameters, "ResultPath": result_path}
        if result_selector:
            state["ResultSelector"] = result_selector
        task = sfn.CustomState(self, name, state_json=state)
        if absent:
            error, cause = absent
            explain = sfn.Pass(self, f"{name}: absent", parameters={"step": name, "error": error, "cause": cause}, result_path="$.failure")
            explain.next(self.failed)
            task.add_catch(explain, errors=[error], result_path="$.error")
        if catch:
            self._catch(task, name, integration, parameters)
        if not integration.endswith(".sync"):
            task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(5), max_attempts=4, backoff_rate=2)
        return task

    def _catch(self, task: sfn.CustomState, name: str, integration: str, parameters: dict) -> None:
        """States.ALL -> "<name>: failed" (the error and the raw Cause) -> Notify failure; a SageMaker job is described first."""
        failed = sfn.Pass(
            self,
            f"{name}: failed",
            parameters={"step": name, "error.$": "$.error.Error", "cause.$": "$.error.Cause"},
            result_path="$.failure",
        )
        failed.next(self.failed)
        job = SYNC_JOBS.get(integration)
        if job is None:
            task.add_catch(failed, errors=["States.ALL"], result_path="$.error")
            return
        describe_failed_job(
            self,
            task,
            name,
            job,
            parameters[f"{job.name_field}.$"],  # the job this Task started
            make_task=self._describe_task,
            job_failed=self._job_failed_pass(name),
            fallback=failed,
        )

    def _describe_task(self, name: str, integration: str, parameters: dict, result_path: str) -> sfn.CustomState:
        return self._task(name, integration, parameters, result_path, catch=False)

    def _job_failed_pass(self, step: str) -> JobFailurePass:
        """The described job as $.failure's cause (Notify failure adds the step before it and the error after it)."""

        def job_failed(name: str, summary: Format, has_reason: bool) -> sfn.Pass:
            # Without a FailureReason (e.g. a stopped job) the raw Cause is all there is: keep it.
            cause = summary if has_reason else summary + Format(" Cause: {}", ("$.error.Cause",))
            state = sfn.Pass(
                self, name, parameters={"step": step, "error.$": "$.error.Error", "cause.$": cause.expression()}, result_path="$.failure"
            )
            state.next(self.failed)
            return state

        return job_failed


def _integration(name: str) -> str:
    return f"arn:{Aws.PARTITION}:states:::{name}"

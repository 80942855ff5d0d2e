"""The training pipeline as a Step Functions definition, readable top to bottom.

    validate input -> defaults -> job names -> pretrained weights: channel or hyperparameter
    -> read + check the serving record (unless force/never)
    -> Prepare -> (Tune | given hyperparameters) -> Train -> Evaluate -> read evaluation + gate numbers
    -> Gate -> Create model -> Create endpoint config -> Create or Update endpoint
    -> wait until InService -> autoscaling -> record what serves -> Notify
Every Task catches every error into "<step> failed" -> Notify failure -> Fail, naming the step (a failed
SageMaker job is described first, so the message leads with the job, its FailureReason and a console link).
The SageMaker jobs use the .sync integration (Step Functions waits for the job to finish); the
Parameters of each call are built in sagemaker_params.py.

Run-time errors that no Catch can take: on AWS a Choice rule on a missing path, a path in Parameters /
ResultSelector that is not there, and an intrinsic function given the wrong kind of value fail the
execution with States.Runtime, which `States.ALL` does not match, and Pass/Choice states cannot Catch at all
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). So every path a Choice
or Pass reads is written by an earlier state or checked with IsPresent first, every value from outside
(input, S3 files, service answers) is checked before a Pass uses it, and ResultSelectors only read fields
the service API marks required. tests/pipeline/test_definition_static.py checks all of this on the
rendered definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.pipeline import sagemaker_params as params
from infra.pipeline.input_schema import PRETRAINED_HYPERPARAMETER, InputValidation, defaults, pretrained_prefixes
from infra.pipeline.roles import SERVING_RECORD_KEY
from infra.pipeline.settings import ENDPOINT_MAX_POLLS, ENDPOINT_POLL_SECONDS, JOB_KINDS, DefinitionSettings
from infra.storage_stack import CHECKPOINTS_PREFIX, RUNS_PREFIX

C = sfn.Condition
# Errors that clear by themselves: retried with backoff. Everything else goes to the failure path.
TRANSIENT_ERRORS = [
    "SageMaker.ThrottlingException",
    "ThrottlingException",
    "SageMaker.InternalFailure",
    "ApplicationAutoScaling.ConcurrentUpdateException",
]
# DescribeEndpoint on an absent endpoint answers ValidationException ("Could not find endpoint");
# the aws-sdk integration names it after the service. Anything else is a real failure.
ENDPOINT_ABSENT_ERRORS = [
    "SageMaker.ValidationException",
    "SageMaker.ResourceNotFoundException",
    "SageMaker.AmazonSageMakerException",
    "SageMaker.SageMakerException",
]
SERVING_RECORD_ABSENT_ERRORS = ["S3.NoSuchKeyException"]


@dataclass(frozen=True)
class JobKind:
    label: str
    describe: str  # the aws-sdk action that describes it
    name_field: str
    status_field: str
    console: str  # the SageMaker console's path segment


_PROCESSING = JobKind("processing job", "describeProcessingJob", "ProcessingJobName", "ProcessingJobStatus", "processing-jobs")
JOBS = {
    "prepare": _PROCESSING,
    "evaluation": _PROCESSING,
    "tuning": JobKind(
        "tuning job", "describeHyperParameterTuningJob", "HyperParameterTuningJobName", "HyperParameterTuningJobStatus", "hyper-tuning-jobs"
    ),
    "training": JobKind("training job", "describeTrainingJob", "TrainingJobName", "TrainingJobStatus", "jobs"),
}


class PipelineDefinition(Construct):
    """Builds every state; `.start` is the first one."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DefinitionSettings) -> None:
        super().__init__(scope, construct_id)
        self.s = s = settings
        cfg = s.config

        # --- failure path: "<step> failed" (Pass) -> Notify failure -> Run failed -------------------------
        self.run_failed = sfn.Fail(self, "Run failed", error="PipelineFailed", cause_path="$.failure.message")
        self.notify_failure = self._task(
            "Notify failure",
            "sns:publish",
            {
                "TopicArn": s.topic_arn,
                "Subject.$": f"States.Format('{s.prefix}: run {{}} failed at {{}}', $.run.id, $.failure.step)",
                "Message.$": "$.failure.message",
            },
            result_path="$.notified",
            catch=False,
        )
        self.notify_failure.add_catch(self.run_failed, errors=["States.ALL"], result_path="$.notifyError")
        self.notify_failure.next(self.run_failed)

        # --- input, defaults, names ----------------------------------------------------------------------
        validation = InputValidation(self, "Validation", pretrained_prefixes=pretrained_prefixes(cfg, s.artifacts_bucket))
        apply_defaults = sfn.Pass(
            self,
            "Apply defaults",
            parameters={
                "defaults": defaults(cfg),
                "input.$": "$.input",
                "fixed": {
                    "staticHp": params.static_hyperparameters(),
                    "sagemakerHp": params.sagemaker_hyperparameters(s),
                    "trialSagemakerHp": params.trial_sagemaker_hyperparameters(s),
                },
            },
        )
        merge_settings = sfn.Pass(
            self,
            "Merge input over defaults",
            parameters={"settings.$": "States.JsonMerge($.defaults, $.input, false)", "fixed.$": "$.fixed"},
        )
        # Choice rules cannot tell 2 from 2.5; the JSON text of the counts can.
        counts_as_text = sfn.Pass(
            self,
            "Write counts as text",
            parameters={
                "text.$": "States.JsonToString(States.Array($.settings.trainingInstanceCount, $.settings.tuningMaxJobs, $.settings.tuningMaxParallelJobs))"
            },
            result_path="$.counts",
        )
        check_whole = sfn.Choice(self, "Check counts are whole numbers")
        not_whole = sfn.Fail(
            self,
            "Input rejected: whole numbers",
            error="InvalidExecutionInput",
            cause='input fields "trainingInstanceCount", "tuningMaxJobs" and "tuningMaxParallelJobs" must be whole numbers such as 2, not 2.5',
        )
        check_budget = sfn.Choice(self, "Check tuning budget")
        budget_rejected = sfn.Fail(
            self,
            "Input rejected: tuning budget",
            error="InvalidExecutionInput",
            cause='input field "tuningMaxParallelJobs" must not exceed tuningMaxJobs',
        )
        make_run_id = sfn.Pass(
            self,
            "Make run id",
            # 8 hex characters of a fresh UUID: unique per run, short enough for SageMaker's name limits.
            parameters={"id.$": "States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0)"},
            result_path="$.run",
        )
        name_jobs = sfn.Pass(self, "Name jobs", parameters=self._names(), result_path="$.names")
        name_paths = sfn.Pass(self, "Name run paths", parameters=self._paths(), result_path="$.paths")

        # --- pretrained weights: an S3 URI is the `pretrained` channel; imagenet / none the train.py flag -----
        # $.inputs: the InputDataConfig of every trial and of Train, the weights' hyperparameters, and the trials'
        # StaticHyperParameters. settings.pretrained is always a string here (validated, or cdk.json's default).
        weights_from_s3 = sfn.Choice(self, "Pretrained weights from S3?")
        pretrained_channel = sfn.Pass(
            self,
            "Add pretrained channel",
            parameters={"channels": params.channels(pretrained=True), "hyperparameters": {}},
            result_path="$.inputs",
        )
        weights_flag = sfn.Pass(
            self,
            "Set pretrained-weights hyperparameter",
            parameters={
                "channels": params.channels(pretrained=False),
                "hyperparameters": {f"{PRETRAINED_HYPERPARAMETER}.$": "$.settings.pretrained"},
            },
            result_path="$.inputs",
        )
        trial_hp = sfn.Pass(
            self,
            "Build trial hyperparameters",
            # static < the weights' choice < the container's sagemaker_* settings (no torchrun across trials)
            parameters={
                "channels.$": "$.inputs.channels",
                "hyperparameters.$": "$.inputs.hyperparameters",
                "trialStaticHp.$": "States.JsonMerge(States.JsonMerge($.fixed.staticHp, $.inputs.hyperparameters, false), $.fixed.trialSagemakerHp, false)",
            },
            result_path="$.inputs",
        )

        # --- the serving record, checked before any job is paid for -------------------------------------
        record_needed = sfn.Choice(self, "Serving record needed?")
        record_not_needed = sfn.Pass(
            self,
            "Serving record not compared",
            # deploy=force / never: the gate does not compare, so a broken record must not stop the run.
            result=sfn.Result.from_object({"present": False, "compared": False, "record": {"accuracy": 0}}),
            result_path="$.serving",
        )
        record_location = f"s3://{s.artifacts_bucket}/{SERVING_RECORD_KEY}"
        read_serving = self._read_json(
            "Read serving record",
            {"Key": SERVING_RECORD_KEY},
            "$.serving",
            "record",
            catch=False,
            extra={"present": True, "compared": True},
        )
        no_serving = sfn.Pass(
            self,
            "No model serving yet",
            result=sfn.Result.from_object({"present": False, "compared": True, "record": {"accuracy": 0}}),
            result_path="$.serving",
        )
        read_serving.add_catch(no_serving, errors=SERVING_RECORD_ABSENT_ERRORS, result_path="$.servingError")
        self._catch(
            read_serving,
            "Read serving record",
            hint=f"{record_location} could not be read as JSON: fix or delete it, or start the run with deploy=force. ",
        )
        check_record = sfn.Choice(self, "Serving record readable?")
        record_unreadable = self._failure_pass(
            "Serving record unreadable",
            f"States.Format('{record_location} has no accuracy from 0 to 1: fix or delete it, or start the run with deploy=force. "
            "Record: {}', States.JsonToString($.serving.record))",
        )

        # --- Prepare, Tune, Train -------------------------------------------------------------------------
        prepare = self._task(
            "Prepare",
            "sagemaker:createProcessingJob.sync",
            params.prepare_job(s),
            result_selector={"job.$": "$.ProcessingJobName"},
            result_path="$.prepare",
            job_kind="prepare",
        )
        tuning_wanted = sfn.Choice(self, "Hyperparameters given?")
        use_given = sfn.Pass(
            self,
            "Use given hyperparameters",
            parameters={"values.$": "$.settings.hyperparameters", "source": "input"},
            result_path="$.chosen",
        )
        tune = self._task(
            "Tune",
            "sagemaker:createHyperParameterTuningJob.sync",
            params.tuning_job(s),
            # BestTrainingJob is optional in DescribeHyperParameterTuningJob's answer: checked below, not
            # selected here (a missing ResultSelector path is a States.Runtime error on AWS).
            result_selector={"job.$": "$.HyperParameterTuningJobName", "description.$": "$"},
            result_path="$.tuning",
            job_kind="tuning",
        )
        best_found = sfn.Choice(self, "Tuning found a best job?")
        no_best = self._failure_pass(
            "Tune found no best training job",
            "States.Format('Tuning job {} completed without a best training job: no trial reported the objective metric. "
            "Description: {}', $.tuning.job, States.JsonToString($.tuning.description.TrainingJobStatusCounters))",
        )
        keep_tuning = sfn.Pass(
            self,
            "Keep tuning summary",
            parameters={
                "job.$": "$.tuning.job",
                "bestTrainingJob.$": "$.tuning.description.BestTrainingJob.TrainingJobName",
                "hyperparameters.$": "$.tuning.description.BestTrainingJob.TunedHyperParameters",
            },
            result_path="$.tuning",
        )
        use_best = sfn.Pass(
            self,
            "Use best hyperparameters",
            parameters={"values.$": "$.tuning.hyperparameters", "source.$": "$.tuning.job"},
            result_path="$.chosen",
        )
        merge_hp = sfn.Pass(
            self,
            "Merge hyperparameters",
            # static < chosen (given or tuned) < the weights' choice < the container's sagemaker_* settings
            parameters={
                "values.$": "States.JsonMerge(States.JsonMerge(States.JsonMerge($.fixed.staticHp, $.chosen.values, false), "
                "$.inputs.hyperparameters, false), $.fixed.sagemakerHp, false)"
            },
            result_path="$.trainHp",
        )
        train = self._task(
            "Train",
            "sagemaker:createTrainingJob.sync",
            params.training_job(s),
            result_selector={"job.$": "$.TrainingJobName", "modelArtifacts.$": "$.ModelArtifacts.S3ModelArtifacts"},
            result_path="$.training",
            job_kind="training",
        )

        # --- Evaluate and gate ----------------------------------------------------------------------------
        evaluate = self._task(
            "Evaluate",
            "sagemaker:createProcessingJob.sync",
            params.evaluate_job(s),
            result_selector={"job.$": "$.ProcessingJobName"},
            result_path="$.evaluate",
            job_kind="evaluation",
        )
        read_evaluation = self._read_json(
            "Read evaluation", {"Key.$": f"States.Format('{RUNS_PREFIX}{{}}/evaluate/evaluation.json', $.run.id)"}, "$.evaluation", "report"
        )
        read_gate = self._read_json(
            "Read gate numbers", {"Key.$": f"States.Format('{RUNS_PREFIX}{{}}/evaluate/gate.json', $.run.id)"}, "$.gate", "numbers"
        )
        check_gate_numbers = sfn.Choice(self, "Gate numbers readable?")
        gate_unreadable = self._failure_pass(
            "Gate numbers unreadable",
            "States.Format('gate.json of evaluation job {} lacks a numeric accuracy, majority_baseline, margin or required_accuracy: {}', "
            "$.evaluate.job, States.JsonToString($.gate.numbers))",
        )
        gate = sfn.Choice(self, "Gate: deploy?")
        refuse_never = self._refusal("Refused: deploy=never", "States.Format('input deploy=never (accuracy {})', $.gate.numbers.accuracy)")
        refuse_baseline = self._refusal(
            "Refused: not above baseline",
            "States.Format('accuracy {} is below the majority-class baseline {} + margin {} = {}', $.gate.numbers.accuracy, $.gate.numbers.majority_baseline, $.gate.numbers.margin, $.gate.numbers.required_accuracy)",
        )
        refuse_serving = self._refusal(
            "Refused: below serving model",
            "States.Format('accuracy {} is below the serving model accuracy {}', $.gate.numbers.accuracy, $.serving.record.accuracy)",
        )
        notify_refusal = self._task(
            "Notify refusal",
            "sns:publish",
            {
                "TopicArn": s.topic_arn,
                "Subject.$": f"States.Format('{s.prefix}: run {{}} trained, not deployed', $.run.id)",
                "Message.$": "States.Format('Run {} trained {} but did not deploy it: {}. Evaluation: {}', $.run.id, $.training.job, $.refusal.reason, States.JsonToString($.evaluation.report))",
            },
            result_path="$.notified",
        )
        kept = sfn.Succeed(self, "Kept the serving model")

        # --- Deploy -----------------------------------------------------------------------------------------
        create_model = self._task(
            "Create model",
            "sagemaker:createModel",
            params.model(s),
            result_selector={"arn.$": "$.ModelArn"},
            result_path="$.deployed.model",
        )
        create_config = self._task(
            "Create endpoint config",
            "sagemaker:createEndpointConfig",
            params.endpoint_config(s),
            result_selector={"arn.$": "$.EndpointConfigArn"},
            result_path="$.deployed.config",
        )
        find_endpoint = self._task(
            "Find endpoint",
            "aws-sdk:sagemaker:describeEndpoint",
            {"EndpointName": cfg.endpoint_name},
            result_selector={"status.$": "$.EndpointStatus"},
            result_path="$.previous",
            catch=False,
        )
        create_endpoint = self._task(
            "Create endpoint",
            "sagemaker:createEndpoint",
            {"EndpointName": cfg.endpoint_name, "EndpointConfigName.$": "$.names.endpointConfig"},
            result_selector={"arn.$": "$.EndpointArn"},
            result_path="$.deployed.endpoint",
        )
        find_endpoint.add_catch(create_endpoint, errors=ENDPOINT_ABSENT_ERRORS, result_path="$.previous")
        self._catch(find_endpoint, "Find endpoint")
        update_endpoint = self._task(
            "Update endpoint",
            "sagemaker:updateEndpoint",
            params.update_endpoint(s),
            result_selector={"arn.$": "$.EndpointArn"},
            result_path="$.deployed.endpoint",
        )
        # count = DescribeEndpoint checks made once "Check endpoint" has run; at most ENDPOINT_MAX_POLLS.
        start_polls = sfn.Pass(self, "Start endpoint polls", result=sfn.Result.from_object({"count": 1}), result_path="$.poll")
        wait = sfn.Wait(self, "Wait for endpoint", time=sfn.WaitTime.duration(Duration.seconds(ENDPOINT_POLL_SECONDS)))
        check_endpoint = self._task(
            "Check endpoint", "aws-sdk:sagemaker:describeEndpoint", {"EndpointName": cfg.endpoint_name}, result_path="$.endpoint"
        )
        endpoint_ready = sfn.Choice(self, "Endpoint in service?")
        count_poll = sfn.Pass(self, "Count endpoint poll", parameters={"count.$": "States.MathAdd($.poll.count, 1)"}, result_path="$.poll")
        rolled_back = self._failure_pass(
            "Endpoint update rolled back",
            f"States.Format('{cfg.endpoint_name} rolled back: it serves an endpoint config other than {{}}, and the previous model keeps serving. "
            "DescribeEndpoint: {}', $.names.endpointConfig, States.JsonToString($.endpoint))",
        )
        endpoint_failed = self._failure_pass(
            "Endpoint failed",
            f"States.Format('{cfg.endpoint_name} is {{}}. DescribeEndpoint: {{}}', $.endpoint.EndpointStatus, States.JsonToString($.endpoint))",
        )
        endpoint_timeout = self._failure_pass(
            "Endpoint not in service in time",
            f"States.Format('{cfg.endpoint_name} still {{}} after {ENDPOINT_MAX_POLLS} checks {ENDPOINT_POLL_SECONDS} s apart', $.endpoint.EndpointStatus)",
        )
        describe_record = sfn.Pass(
            self,
            "Describe what serves",
            parameters={
                "endpoint": cfg.endpoint_name,
                "model.$": "$.names.model",
                "endpointConfig.$": "$.names.endpointConfig",
                "accuracy.$": "$.gate.numbers.accuracy",
                "evaluation.$": "$.evaluation.report",
                "trainingJob.$": "$.training.job",
                "modelArtifacts.$": "$.training.modelArtifacts",
                "hyperparameters.$": "$.trainHp.values",
                "pretrained.$": "$.settings.pretrained",
                "runId.$": "$.run.id",
                "execution.$": "$$.Execution.Id",
                "deployedAt.$": "$$.State.EnteredTime",
                "image": s.images.inference,
                "code": s.code_s3_url,
            },
            result_path="$.record",
        )
        record_serving = self._task(
            "Record serving model",
            "aws-sdk:s3:putObject",
            {
                "Bucket": s.artifacts_bucket,
                "Key": SERVING_RECORD_KEY,
                "ContentType": "application/json",
                "Body.$": "States.JsonToString($.record)",
            },
            result_path="$.recorded",
        )
        notify_success = self._task(
            "Notify success",
            "sns:publish",
            {
                "TopicArn": s.topic_arn,
                "Subject.$": f"States.Format('{s.prefix}: run {{}} deployed', $.run.id)",
                "Message.$": f"States.Format('Run {{}} deployed model {{}} (accuracy {{}}, baseline {{}}) to endpoint {cfg.endpoint_name} with config {{}}.', "
                "$.run.id, $.names.model, $.gate.numbers.accuracy, $.gate.numbers.majority_baseline, $.names.endpointConfig)",
            },
            result_path="$.notified",
        )
        deployed = sfn.Succeed(self, "Deployed")

        after_ready: sfn.IChainable = describe_record
        if cfg.endpoint_mode == "instance":
            register_target = self._task(
                "Register autoscaling target",
                "aws-sdk:applicationautoscaling:registerScalableTarget",
                params.scalable_target(s),
                result_path="$.autoscaling",
            )
            put_policy = self._task(
                "Put scaling policy",
                "aws-sdk:applicationautoscaling:putScalingPolicy",
                params.scaling_policy(s),
                result_path="$.autoscaling",
            )
            register_target.next(put_policy).next(describe_record)
            after_ready = register_target

        # --- the chain, top to bottom -------------------------------------------------------------------
        validation.valid.next(apply_defaults).next(merge_settings).next(counts_as_text).next(check_whole)
        check_whole.when(C.or_(C.string_matches("$.counts.text", "*.*"), C.string_matches("$.counts.text", "*e*")), not_whole)
        check_whole.otherwise(check_budget)
        check_budget.when(C.number_greater_than_json_path("$.settings.tuningMaxParallelJobs", "$.settings.tuningMaxJobs"), budget_rejected)
        check_budget.otherwise(make_run_id)
        make_run_id.next(name_jobs).next(name_paths).next(weights_from_s3)
        weights_from_s3.when(C.string_matches("$.settings.pretrained", "s3://*"), pretrained_channel)
        weights_from_s3.otherwise(weights_flag)
        pretrained_channel.next(trial_hp)
        weights_flag.next(trial_hp)
        trial_hp.next(record_needed)
        record_needed.when(C.or_(*(C.string_equals("$.settings.deploy", mode) for mode in ("force", "never"))), record_not_needed)
        record_needed.otherwise(read_serving)
        record_not_needed.next(prepare)
        no_serving.next(prepare)
        read_serving.next(check_record)
        accuracy = "$.serving.record.accuracy"
        check_record.when(
            C.and_(
                C.is_present(accuracy),
                C.is_numeric(accuracy),
                C.number_greater_than_equals(accuracy, 0),
                C.number_less_than_equals(accuracy, 1),
            ),
            prepare,
        )
        check_record.otherwise(record_unreadable)
        prepare.next(tuning_wanted)
        tuning_wanted.when(C.is_present("$.settings.hyperparameters"), use_given)
        tuning_wanted.otherwise(tune)
        tune.next(best_found)
        best = "$.tuning.description.BestTrainingJob"
        best_found.when(C.and_(C.is_present(f"{best}.TrainingJobName"), C.is_present(f"{best}.TunedHyperParameters")), keep_tuning)
        best_found.otherwise(no_best)
        keep_tuning.next(use_best).next(merge_hp)
        use_given.next(merge_hp)
        merge_hp.next(train).next(evaluate).next(read_evaluation).next(read_gate).next(check_gate_numbers)
        numbers = [f"$.gate.numbers.{name}" for name in ("accuracy", "majority_baseline", "margin", "required_accuracy")]
        check_gate_numbers.when(C.and_(*(c for path in numbers for c in (C.is_present(path), C.is_numeric(path)))), gate)
        check_gate_numbers.otherwise(gate_unreadable)
        gate.when(C.string_equals("$.settings.deploy", "never"), refuse_never)
        gate.when(C.string_equals("$.settings.deploy", "force"), create_model)
        gate.when(C.number_less_than_json_path("$.gate.numbers.accuracy", "$.gate.numbers.required_accuracy"), refuse_baseline)
        gate.when(C.number_less_than_json_path("$.gate.numbers.accuracy", "$.serving.record.accuracy"), refuse_serving)
        gate.otherwise(create_model)
        for refusal in (refuse_never, refuse_baseline, refuse_serving):
            refusal.next(notify_refusal)
        notify_refusal.next(kept)
        create_model.next(create_config).next(find_endpoint).next(update_endpoint).next(start_polls)
        create_endpoint.next(start_polls)
        start_polls.next(wait).next(check_endpoint).next(endpoint_ready)
        endpoint_ready.when(
            C.and_(
                C.string_equals("$.endpoint.EndpointStatus", "InService"),
                # EndpointConfigName is optional in DescribeEndpoint's answer (botocore model): guarded.
                C.is_present("$.endpoint.EndpointConfigName"),
                C.string_equals_json_path("$.endpoint.EndpointConfigName", "$.names.endpointConfig"),
            ),
            after_ready,
        )
        endpoint_ready.when(C.string_equals("$.endpoint.EndpointStatus", "InService"), rolled_back)
        endpoint_ready.when(
            C.or_(*(C.string_equals("$.endpoint.EndpointStatus", st) for st in ("Failed", "UpdateRollbackFailed", "OutOfService"))),
            endpoint_failed,
        )
        endpoint_ready.when(C.number_greater_than_equals("$.poll.count", ENDPOINT_MAX_POLLS), endpoint_timeout)
        endpoint_ready.otherwise(count_poll)
        count_poll.next(wait)
        describe_record.next(record_serving).next(notify_success).next(deployed)

        self.start: sfn.IChainable = validation.start

    # --- helpers ------------------------------------------------------------------------------------------

    def _names(self) -> dict[str, Any]:
        return {f"{kind}.$": f"States.Format('{self.s.prefix}-{part}-{{}}', $.run.id)" for kind, part in JOB_KINDS.items()}

    def _paths(self) -> dict[str, Any]:
        def uri(key: str) -> str:
            return f"States.Format('{self.s.s3(key)}', $.run.id)"

        run = RUNS_PREFIX + "{}"
        return {
            "prepared.$": uri(f"{run}/prepare/"),
            "train.$": uri(f"{run}/prepare/train/"),
            "validation.$": uri(f"{run}/prepare/validation/"),
            "test.$": uri(f"{run}/prepare/test/"),
            "tuneOutput.$": uri(f"{run}/tune/"),
            "trainOutput.$": uri(f"{run}/train/"),
            "checkpoints.$": uri(CHECKPOINTS_PREFIX + "{}/train/"),
            "profiler.$": uri(f"{run}/profiler/"),
            "evaluation.$": uri(f"{run}/evaluate/"),
        }

    def _task(
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
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::{resource}",
            "Parameters": parameters,
            "ResultPath": result_path,
        }
        if result_selector:
            state["ResultSelector"] = result_selector
        task = sfn.CustomState(self, step, state_json=state)
        if not resource.endswith(".sync"):
            task.add_retry(errors=TRANSIENT_ERRORS, interval=Duration.seconds(5), max_attempts=4, backoff_rate=2)
        if catch:
            self._catch(task, step, job_kind=job_kind)
        return task

    def _catch(self, task: sfn.CustomState, step: str, *, hint: str = "", job_kind: str | None = None) -> None:
        """States.ALL -> "<step> failed" -> Notify failure. A SageMaker job step describes the job first."""
        failed = self._failure_pass(
            f"{step} failed",
            f"States.Format('Step {step} failed with {{}}: {hint}{{}}', $.error.Error, $.error.Cause)",
            error_path="$.error.Error",
        )
        if job_kind is None:
            task.add_catch(failed, errors=["States.ALL"], result_path="$.error")
            return
        # The .sync Cause is the whole Describe* answer (kB, FailureReason deep inside): lead with what a
        # person needs (step, job, reason, console link); the full description is one click away.
        job = JOBS[job_kind]
        describe = self._task(
            f"Describe failed {step} job",
            f"aws-sdk:sagemaker:{job.describe}",
            {f"{job.name_field}.$": f"$.names.{job_kind}"},
            result_path="$.failedJob",
            catch=False,
        )
        describe.add_catch(failed, errors=["States.ALL"], result_path="$.describeError")
        task.add_catch(describe, errors=["States.ALL"], result_path="$.error")
        has_reason = sfn.Choice(self, f"{step} job has a FailureReason?")
        console = f"https://{Aws.REGION}.console.aws.amazon.com/sagemaker/home?region={Aws.REGION}#/{job.console}/{{}}"
        with_reason = self._failure_pass(
            f"{step} job failed",
            f"States.Format('Step {step} failed: {job.label} {{}} ended {{}}. FailureReason: {{}} Console: {console} (error {{}})', "
            f"$.names.{job_kind}, $.failedJob.{job.status_field}, $.failedJob.FailureReason, $.names.{job_kind}, $.error.Error)",
            error_path="$.error.Error",
            step=step,
        )
        without_reason = self._failure_pass(
            f"{step} job failed without reason",
            f"States.Format('Step {step} failed: {job.label} {{}} is {{}}. Console: {console} Error {{}}: {{}}', "
            f"$.names.{job_kind}, $.failedJob.{job.status_field}, $.names.{job_kind}, $.error.Error, $.error.Cause)",
            error_path="$.error.Error",
            step=step,
        )
        describe.next(has_reason)
        has_reason.when(C.and_(C.is_present("$.failedJob.FailureReason"), C.is_string("$.failedJob.FailureReason")), with_reason)
        has_reason.otherwise(without_reason)

    def _failure_pass(self, name: str, message: str, *, error_path: str | None = None, step: str | None = None) -> sfn.Pass:
        step = step or name.removesuffix(" failed")
        failure: dict[str, Any] = {"step": step, "message.$": message}
        failure["error.$" if error_path else "error"] = error_path or name
        state = sfn.Pass(self, name, parameters=failure, result_path="$.failure")
        state.next(self.notify_failure)
        return state

    def _refusal(self, name: str, reason: str) -> sfn.Pass:
        return sfn.Pass(self, name, parameters={"reason.$": reason}, result_path="$.refusal")

    def _read_json(
        self, step: str, key: dict[str, str], result_path: str, field: str, *, catch: bool = True, extra: dict[str, Any] | None = None
    ) -> sfn.CustomState:
        """GetObject a JSON file into `result_path`.`field` (the body parsed with States.StringToJson).

        The parse happens in the Task's ResultSelector, where the Task's Catch applies, not in a Pass
        (which cannot Catch). What the parsed value holds is checked by a Choice before any use.
        """
        return self._task(
            step,
            "aws-sdk:s3:getObject",
            {"Bucket": self.s.artifacts_bucket, **key},
            result_selector={f"{field}.$": "States.StringToJson($.Body)", **(extra or {})},
            result_path=result_path,
            catch=catch,
        )

"""The pipeline's state machine EXECUTED in moto's ASL interpreter, for each path a run can take.

Real: the definition rendered from the synthesized template (CloudFormation references replaced by
test values), moto 5.2.5's interpreter running it (Choice, Catch, Retry, Wait, intrinsics), botocore
validating every SageMaker / S3 / SNS / Application Auto Scaling request against the real API
models, moto's S3, SNS and Application Auto Scaling backends, and the deploy rule (training_code/deploy_rule.py,
run as the Evaluate job's script runs it).
Emulated (tests/pipeline/moto_adapter.py): `.sync` (poll Describe* until a terminal status), how
SageMaker jobs end, the files the Evaluate job writes, UpdateEndpoint, and time (Wait states).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import metrics_format
import prep
import pytest
import search_space
from moto import mock_aws

from infra.pipeline.images import resolve_images
from infra.pipeline.input_schema import PRETRAINED_HYPERPARAMETER
from infra.pipeline.settings import ENDPOINT_MAX_POLLS, ENDPOINT_POLL_SECONDS, FILE_LIST_PATH
from tests.pipeline.moto_adapter import REGION, History, Scenario, TopicInbox, emulated_sagemaker, history, run_execution
from tests.pipeline.render import ACCOUNT, RenderValues

STATES_ROLE = f"arn:aws:iam::{ACCOUNT}:role/test-states"
SM = "sagemaker"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


class Pipeline:
    """The state machine created in moto from the rendered definition, with the buckets and topic it uses."""

    def __init__(self, definition: str, values: RenderValues) -> None:
        self.values = values
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(Bucket=values.artifacts_bucket)
        self.s3.create_bucket(Bucket=values.data_bucket)
        sns = boto3.client("sns", region_name=REGION)
        sns.create_topic(Name=values.topic_name)
        self.inbox = TopicInbox(values.topic_arn)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.arn = self.sfn.create_state_machine(name="pipeline", definition=definition, roleArn=STATES_ROLE)["stateMachineArn"]

    def run(self, name: str, execution_input: Any) -> tuple[dict[str, Any], History]:
        described = run_execution(self.sfn, self.arn, name, execution_input)
        return described, history(self.sfn, described["executionArn"])

    def notifications(self) -> list[str]:
        return self.inbox.messages()

    def serving_record(self) -> dict[str, Any]:
        return json.loads(self.s3.get_object(Bucket=self.values.artifacts_bucket, Key="serving/current.json")["Body"].read())


@pytest.fixture
def pipeline(aws: Any, rendered_definition: str, test_values: RenderValues) -> Pipeline:
    return Pipeline(rendered_definition, test_values)


def _only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, f"expected one call, got {len(items)}"
    return items[0]


def _deployed_run(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, name: str, scenario: Scenario | None = None) -> History:
    with emulated_sagemaker(monkeypatch, scenario or Scenario()):
        described, events = pipeline.run(name, {})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    return events


def test_first_run_creates_the_endpoint(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, synth: Any) -> None:
    """Real: interpreter, botocore-validated requests, moto S3/SNS/autoscaling records. Emulated: jobs succeed, endpoint Creating -> InService."""
    config = synth.config
    images = resolve_images(config)
    code_url = synth.pipeline.node.find_child("TrainingCode").location.s3_url
    code_url = synth.pipeline.resolve(code_url)
    scenario = Scenario()
    with emulated_sagemaker(monkeypatch, scenario) as world:
        described, events = pipeline.run("first-run", {})

    assert described["status"] == "SUCCEEDED", described.get("cause")
    entered = events.entered()
    assert (
        entered.index("Prepare")
        < entered.index("Tune")
        < entered.index("Train")
        < entered.index("Evaluate")
        < entered.index("Gate: deploy?")
    )
    assert "Create endpoint" in entered and "Update endpoint" not in entered
    assert entered[-3:] == ["Record serving model", "Notify success", "Deployed"]
    # The endpoint was polled through Creating (one Wait more), with the configured interval.
    assert entered.count("Check endpoint") == 2 and world.waited_seconds == [60, 60]

    prepare = events.scheduled(SM, "createProcessingJob.sync")[0]
    assert prepare["AppSpecification"]["ImageUri"] == images.processing
    args = prepare["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--source") + 1] == config.dataset_source
    assert args[args.index("--file-list") + 1] == FILE_LIST_PATH
    assert prepare["ProcessingInputs"][0]["S3Input"]["S3Uri"] == code_url

    tuning = _only(events.scheduled(SM, "createHyperParameterTuningJob.sync"))
    assert len(tuning["HyperParameterTuningJobName"]) <= 32
    tuning_config = tuning["HyperParameterTuningJobConfig"]
    assert tuning_config["Strategy"] == "Bayesian" and tuning_config["TrainingJobEarlyStoppingType"] == "Auto"
    assert tuning_config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": metrics_format.OBJECTIVE_METRIC}
    assert tuning_config["ParameterRanges"] == search_space.to_sagemaker_ranges()
    assert tuning_config["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": config.tuning_max_jobs,
        "MaxParallelTrainingJobs": config.tuning_max_parallel_jobs,
    }
    trial = tuning["TrainingJobDefinition"]
    assert trial["AlgorithmSpecification"]["MetricDefinitions"] == metrics_format.METRIC_DEFINITIONS
    assert trial["AlgorithmSpecification"]["TrainingImage"] == images.tuning
    assert trial["StaticHyperParameters"]["sagemaker_submit_directory"] == code_url
    assert trial["EnableManagedSpotTraining"] is True and "CheckpointConfig" not in trial  # trials must not share checkpoints

    training = _only(events.scheduled(SM, "createTrainingJob.sync"))
    assert len(training["TrainingJobName"]) <= 63
    hp = training["HyperParameters"]
    assert {k: hp[k] for k in scenario.best_hyperparameters} == scenario.best_hyperparameters  # the tuner's best, no human copying
    # search_space's fixed values, except those the tuner chose and the weights, which the pipeline's `pretrained` decides.
    static = {k: v for k, v in search_space.STATIC_HYPERPARAMETERS.items() if k not in scenario.best_hyperparameters}
    static.pop(PRETRAINED_HYPERPARAMETER, None)
    assert {k: hp[k] for k in static} == static
    assert hp["sagemaker_program"] == "train.py" and hp["sagemaker_submit_directory"] == code_url and hp["sagemaker_region"] == REGION
    assert hp["sagemaker_torch_distributed_enabled"] == "true"  # ml.g5 (GPU) in cdk.json
    assert training["ResourceConfig"]["InstanceCount"] == config.training_instance_count == 2
    assert training["ResourceConfig"]["InstanceType"] == config.training_instance_type
    assert training["AlgorithmSpecification"]["TrainingImage"] == images.training
    assert training["AlgorithmSpecification"]["MetricDefinitions"] == metrics_format.METRIC_DEFINITIONS
    assert training["EnableManagedSpotTraining"] is True
    assert training["StoppingCondition"]["MaxWaitTimeInSeconds"] >= training["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert training["CheckpointConfig"]["S3Uri"].startswith(f"s3://{pipeline.values.artifacts_bucket}/checkpoints/")
    assert training["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert "S3OutputPath" in training["ProfilerConfig"]

    evaluate = events.scheduled(SM, "createProcessingJob.sync")[1]
    model_input = next(i for i in evaluate["ProcessingInputs"] if i["InputName"] == "model")
    artifacts = f"s3://{pipeline.values.artifacts_bucket}/runs/"
    assert model_input["S3Input"]["S3Uri"].startswith(artifacts) and model_input["S3Input"]["S3Uri"].endswith("/output/model.tar.gz")
    assert f"--margin {config.deploy_margin_over_baseline:g}" in evaluate["AppSpecification"]["ContainerEntrypoint"][2]
    # The decision is made in the Evaluate job: it gets the deploy mode and the serving accuracy (none served yet).
    assert evaluate["Environment"] == {"DEPLOY_MODE": "auto", "SERVING_ACCURACY": "none"}
    assert world.gate_decisions[-1]["deploy"] is True and world.gate_decisions[-1]["serving_accuracy"] is None

    model = _only(events.scheduled(SM, "createModel"))
    assert model["PrimaryContainer"]["Image"] == images.inference
    assert model["PrimaryContainer"]["ModelDataUrl"] == model_input["S3Input"]["S3Uri"]
    endpoint_config = _only(events.scheduled(SM, "createEndpointConfig"))
    variant = _only(endpoint_config["ProductionVariants"])
    assert variant["InstanceType"] == config.endpoint_instance_type and variant["InitialInstanceCount"] == config.endpoint_min_instances
    assert endpoint_config["DataCaptureConfig"]["DestinationS3Uri"].startswith(f"s3://{pipeline.values.artifacts_bucket}/datacapture/")

    endpoint = pipeline.sagemaker.describe_endpoint(EndpointName=config.endpoint_name)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == endpoint_config["EndpointConfigName"]
    autoscaling = boto3.client("application-autoscaling", region_name=REGION)
    target = _only(autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"])
    assert target["ResourceId"] == f"endpoint/{config.endpoint_name}/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (config.endpoint_min_instances, config.endpoint_max_instances)
    policy = _only(autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"])
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == config.endpoint_target_invocations_per_instance

    record = pipeline.serving_record()
    assert record["accuracy"] == scenario.accuracy and record["model"] == model["ModelName"]
    assert (
        record["endpointConfig"] == endpoint_config["EndpointConfigName"]
        and record["evaluation"]["majority_baseline"] == scenario.majority_baseline
    )
    (message,) = pipeline.notifications()
    assert "deployed model" in message and model["ModelName"] in message


def test_second_run_updates_the_endpoint_blue_green(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, synth: Any) -> None:
    """Real: the Find endpoint -> Update branch on moto's endpoint. Emulated: UpdateEndpoint (Updating -> InService on the new config)."""
    first = _deployed_run(pipeline, monkeypatch, "run-1")
    better = Scenario(accuracy=0.5)
    second = _deployed_run(pipeline, monkeypatch, "run-2", better)

    assert "Update endpoint" in second.entered() and "Create endpoint" not in second.entered()
    update = _only(second.scheduled(SM, "updateEndpoint"))
    config_name = _only(second.scheduled(SM, "createEndpointConfig"))["EndpointConfigName"]
    assert update["EndpointConfigName"] == config_name != _only(first.scheduled(SM, "createEndpointConfig"))["EndpointConfigName"]
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": f"{synth.config.name_prefix}-endpoint-5xx-rollback"}
    ]
    # The variant name stays, so the autoscaling target registered by the first run still applies.
    variants = [_only(_only(h.scheduled(SM, "createEndpointConfig"))["ProductionVariants"])["VariantName"] for h in (first, second)]
    assert variants == ["AllTraffic", "AllTraffic"]
    endpoint = pipeline.sagemaker.describe_endpoint(EndpointName=synth.config.endpoint_name)
    assert endpoint["EndpointConfigName"] == config_name
    assert pipeline.serving_record()["accuracy"] == better.accuracy


def test_given_hyperparameters_skip_tuning(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: input merge and the Choice that skips Tune. Emulated: Prepare/Train/Evaluate succeed."""
    given = {"lr": "0.002", "batch-size": "32", "epochs": "20", "model": "resnet18"}
    with emulated_sagemaker(monkeypatch, Scenario()) as world:
        described, events = pipeline.run("given-hp", {"hyperparameters": given, "trainingInstanceCount": 3, "deploy": "never"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert "Tune" not in events.entered() and "Use given hyperparameters" in events.entered()
    assert events.scheduled(SM, "createHyperParameterTuningJob.sync") == []
    assert pipeline.sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
    training = _only(events.scheduled(SM, "createTrainingJob.sync"))
    assert {k: training["HyperParameters"][k] for k in given} == given
    assert training["ResourceConfig"]["InstanceCount"] == 3
    # deploy=never: trained and evaluated, nothing deployed; the Evaluate job's decision says why.
    assert "Notify refusal" in events.entered() and events.scheduled(SM, "createModel") == []
    assert world.gate_decisions[-1]["deploy"] is False and world.gate_decisions[-1]["mode"] == "never"
    assert "deploy=never" in pipeline.notifications()[0]


def _assert_job_failed_at(described: dict[str, Any], events: History, pipeline: Pipeline, step: str, job: str, reason: str) -> str:
    """A failed SageMaker job: the message leads with the step, the job name, its FailureReason and a console link."""
    assert described["status"] == "FAILED"
    assert described["error"] == "PipelineFailed"
    assert events.entered()[-5:] == [
        f"Describe failed {step} job",
        f"{step} job has a FailureReason?",
        f"{step} job failed",
        "Notify failure",
        "Run failed",
    ]
    (message,) = pipeline.notifications()
    assert message == described["cause"]
    assert message.startswith(f"Step {step} failed: {job} ")
    name = message.removeprefix(f"Step {step} failed: {job} ").split(" ")[0]
    assert f"FailureReason: {reason} " in message
    assert f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}#/" in message and message.count(name) == 2
    # The whole Describe* answer (the .sync Cause) is not pasted in: the console link leads to it.
    assert len(message) < 400 + len(reason), len(message)
    return name


def test_tuning_failure_notifies_and_fails(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: Catch -> 'Tune failed' -> SNS -> Fail. Emulated: the tuning job ends Failed (.sync -> States.TaskFailed)."""
    reason = "All training jobs failed: CUDA out of memory"
    with emulated_sagemaker(monkeypatch, Scenario(tuning_fails=reason)):
        described, events = pipeline.run("tuning-fails", {})
    name = _assert_job_failed_at(described, events, pipeline, "Tune", "tuning job", reason)
    assert name == _only(events.scheduled(SM, "createHyperParameterTuningJob.sync"))["HyperParameterTuningJobName"]
    assert "#/hyper-tuning-jobs/" + name in described["cause"]
    assert events.scheduled(SM, "createTrainingJob.sync") == []


def test_training_failure_notifies_and_fails(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: Catch -> 'Train failed' -> SNS -> Fail. Emulated: the training job ends Failed."""
    reason = "AlgorithmError: train.py exited with code 1"
    with emulated_sagemaker(monkeypatch, Scenario(training_fails=reason)):
        described, events = pipeline.run("training-fails", {})
    name = _assert_job_failed_at(described, events, pipeline, "Train", "training job", reason)
    assert name == _only(events.scheduled(SM, "createTrainingJob.sync"))["TrainingJobName"]
    assert "#/jobs/" + name in described["cause"] and "ended Failed" in described["cause"]
    assert "Evaluate" not in events.entered()


def test_gate_refuses_a_model_not_above_the_baseline(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: the Gate Choice on gate.json written by deploy_rule.py from the job's own command. Emulated: evaluation.json's numbers."""
    with emulated_sagemaker(monkeypatch, Scenario(accuracy=0.28, majority_baseline=0.255)):  # needs 0.305
        described, events = pipeline.run("weak-model", {})
    assert described["status"] == "SUCCEEDED"
    assert events.entered()[-3:] == ["Gate: deploy?", "Notify refusal", "Kept the serving model"]
    assert events.scheduled(SM, "createModel") == []
    (message,) = pipeline.notifications()
    assert "did not deploy" in message and "0.28" in message and "0.305" in message


def test_gate_refuses_a_model_below_the_serving_one_unless_forced(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: serving/current.json written by one run and read by the next in moto S3. Emulated: evaluation numbers."""
    _deployed_run(pipeline, monkeypatch, "good", Scenario(accuracy=0.5))
    pipeline.notifications()
    with emulated_sagemaker(monkeypatch, Scenario(accuracy=0.45)):
        described, events = pipeline.run("worse", {})
        assert described["status"] == "SUCCEEDED" and "Notify refusal" in events.entered()
        # The serving record's accuracy reached the Evaluate job, whose decision the refusal quotes.
        evaluate = events.scheduled(SM, "createProcessingJob.sync")[1]
        assert evaluate["Environment"] == {"DEPLOY_MODE": "auto", "SERVING_ACCURACY": "0.5"}
        (message,) = pipeline.notifications()
        assert "below the serving model's recorded accuracy 0.500" in message
        assert pipeline.serving_record()["accuracy"] == 0.5
        described, events = pipeline.run("worse-forced", {"deploy": "force"})
    assert described["status"] == "SUCCEEDED" and "Update endpoint" in events.entered()
    assert pipeline.serving_record()["accuracy"] == 0.45


@pytest.mark.parametrize(
    "gate_file",
    [{"deploy": "yes", "reason": "r", "accuracy": 0.5, "majority_baseline": 0.2}, {"deploy": True, "accuracy": 0.5}, [True]],
    ids=["deploy-not-boolean", "no-reason", "not-an-object"],
)
def test_unreadable_gate_decision_fails_the_run_and_notifies(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, gate_file: Any) -> None:
    """Real: the Choice that checks gate.json before the Gate reads it. Emulated: a job that wrote a broken gate.json."""
    with emulated_sagemaker(monkeypatch, Scenario(broken_gate_file=gate_file)):
        described, events = pipeline.run("broken-gate", {})
    assert described["status"] == "FAILED" and described["error"] == "PipelineFailed"
    assert events.entered()[-4:] == ["Gate decision readable?", "Gate decision unreadable", "Notify failure", "Run failed"]
    assert events.scheduled(SM, "createModel") == []
    (message,) = pipeline.notifications()
    assert "gate.json of evaluation job" in message and "boolean deploy" in message


def test_evaluation_the_rule_cannot_read_fails_the_evaluate_job(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: deploy_rule.py run with the job's own command line exits 2 on an accuracy above 1, so the job fails.
    Emulated: the job's status follows the script's exit code."""
    with emulated_sagemaker(monkeypatch, Scenario(accuracy=1.5)) as world:
        described, events = pipeline.run("bad-evaluation", {})
    assert described["status"] == "FAILED" and world.gate_decisions == []
    assert "Evaluate job failed" in events.entered() and "Read evaluation" not in events.entered()
    assert "deploy_rule.py exited with code 2" in described["cause"]


def test_endpoint_update_failure_keeps_the_previous_config(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, synth: Any) -> None:
    """Real: the poll loop's Choice spotting a rollback. Emulated: UpdateEndpoint rolls back (InService on the old config)."""
    first = _deployed_run(pipeline, monkeypatch, "serving")
    first_config = _only(first.scheduled(SM, "createEndpointConfig"))["EndpointConfigName"]
    pipeline.notifications()
    reason = "Rolled back: alarm invmon-endpoint-5xx-rollback fired during baking"
    with emulated_sagemaker(monkeypatch, Scenario(accuracy=0.5, update_fails=reason)):
        described, events = pipeline.run("bad-update", {})
    assert described["status"] == "FAILED" and described["error"] == "PipelineFailed"
    assert events.entered()[-4:] == ["Endpoint in service?", "Endpoint update rolled back", "Notify failure", "Run failed"]
    assert first_config in described["cause"] and reason in described["cause"]
    endpoint = pipeline.sagemaker.describe_endpoint(EndpointName=synth.config.endpoint_name)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == first_config
    assert pipeline.serving_record()["endpointConfig"] == first_config  # the record still names what serves
    (message,) = pipeline.notifications()
    assert "rolled back" in message


def test_endpoint_that_never_comes_up_fails_after_bounded_polls(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: the Wait -> Check -> Choice -> count loop and its bound. Emulated: the endpoint stays Creating; Wait time."""
    with emulated_sagemaker(monkeypatch, Scenario(endpoint_stuck=True)) as world:
        described, events = pipeline.run("stuck-endpoint", {})
    assert described["status"] == "FAILED"
    assert events.entered()[-3:] == ["Endpoint not in service in time", "Notify failure", "Run failed"]
    assert events.entered().count("Check endpoint") == ENDPOINT_MAX_POLLS
    assert world.waited_seconds == [ENDPOINT_POLL_SECONDS] * ENDPOINT_MAX_POLLS
    assert f"still Creating after {ENDPOINT_MAX_POLLS} checks" in described["cause"]


MALFORMED_INPUTS: list[tuple[Any, str]] = [
    ("retrain please", "not an object"),
    ([1, 2], "not an object"),
    ({"deploy": "sometimes"}, "deploy"),
    ({"trainingInstanceCount": "two"}, "trainingInstanceCount"),
    ({"trainingInstanceCount": 0}, "trainingInstanceCount"),
    ({"tuningMaxJobs": 500}, "tuningMaxJobs"),
    ({"tuningMaxParallelJobs": True}, "tuningMaxParallelJobs"),
    ({"hyperparameters": "lr=0.1"}, "hyperparameters"),
    ({"hyperparameters": [{"lr": "0.1"}]}, "hyperparameters"),
    ({"dataSource": "my-bucket/bins"}, "dataSource"),
    ({"dataSource": 42}, "dataSource"),
    ({"tuningMaxJobs": 2, "tuningMaxParallelJobs": 3}, "tuning budget"),
    ({"trainingInstanceCount": 1.5}, "whole numbers"),
    ({"tuningMaxJobs": 4.0}, "whole numbers"),
    ({"pretrained": "ImageNet"}, "pretrained"),
    ({"pretrained": 1}, "pretrained"),
    ({"pretrained": "s3://someone-elses-bucket/pretrained/resnet18/"}, "pretrained"),
    ({"hyperparameters": {"lr": "0.001", "pretrained-weights": "none"}}, "hyperparameters"),
    ({"dataset": "everything"}, "dataset"),
    ({"dataset": "All"}, "dataset"),
    ({"dataset": 1}, "dataset"),
    ({"prepareInstances": 0}, "prepareInstances"),
    ({"prepareInstances": 21}, "prepareInstances"),
    ({"prepareInstances": "3"}, "prepareInstances"),
    ({"prepareInstances": 2.5}, "whole numbers"),
]


def test_malformed_input_fails_at_once(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: the validation Choice/Fail states in moto. Nothing emulated is reached: no task is scheduled."""
    # One moto set-up for all the cases: creating the state machine is the slow part.
    with emulated_sagemaker(monkeypatch, Scenario()):
        for number, (execution_input, field) in enumerate(MALFORMED_INPUTS):
            described, events = pipeline.run(f"bad-input-{number}", execution_input)
            case = f"input {execution_input!r}"
            assert described["status"] == "FAILED", case
            assert described["error"] == "InvalidExecutionInput", case
            assert events.entered()[-1] == f"Input rejected: {field}", case
            name = {"tuning budget": "tuningMaxParallelJobs", "not an object": "JSON object", "whole numbers": "whole numbers"}.get(
                field, field
            )
            assert name in described["cause"], case
            assert not [e for e in events.events if e["type"] == "TaskScheduled"], f"{case}: a job started"


# --- issue 17: inputs and records that moto was lenient about --------------------------------------------------
# Which behaviour is whose:
# - AWS (Amazon States Language, https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html):
#   Pass and Choice states cannot Catch; States.ALL does not match States.Runtime. A Choice rule whose Variable path
#   is missing fails the execution (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html: only
#   IsPresent is safe on a missing path); JsonMerge on a non-object is an intrinsic failure in a Pass. None of these
#   can reach "Notify failure", so the definition must never let them happen: test_definition_static.py proves
#   that for every path; the tests below execute the inputs that used to reach them.
# - moto 5.2.5: routes a Choice rule on a missing path as "false" instead of failing, and catches an intrinsic
#   failure in a Task's ResultSelector with the Task's States.ALL Catch. The tests below therefore do not rely on
#   either leniency: every case is decided by an IsPresent/type check or by JSON text the definition writes itself.


def _no_job_started(pipeline: Pipeline, events: History) -> None:
    assert not [e for e in events.events if e["type"] == "TaskScheduled" and e["taskScheduledEventDetails"]["resourceType"] == SM]
    assert pipeline.sagemaker.list_processing_jobs()["ProcessingJobSummaries"] == []
    assert pipeline.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_inputs_that_slipped_through_fail_before_any_job(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[]`, `{"hyperparameters": []}` and a typo'd field used to start Prepare (then States.Runtime, or a deploy)."""
    from infra.pipeline.input_schema import FIELD_NAMES

    cases: list[tuple[Any, str, str]] = [
        ([], "Input rejected: not an object", "must be a JSON object"),
        ({"hyperparameters": []}, "Input rejected: hyperparameters", '"hyperparameters" must be a JSON object'),
        ({"hyperparameters": None}, "Input rejected: hyperparameters", '"hyperparameters" must be a JSON object'),
        ({"Deploy": "never"}, "Input rejected: unknown field", 'Input: {"Deploy":"never"}'),
        ({"deploy": "never", "notes": "a: b: c"}, "Input rejected: unknown field", '"notes":"a: b: c"'),
        ({"deploy": "never", "x": {}}, "Input rejected: unknown field", '"x":{}'),
    ]
    with emulated_sagemaker(monkeypatch, Scenario()):
        for number, (execution_input, last_state, text) in enumerate(cases):
            described, events = pipeline.run(f"slipped-{number}", execution_input)
            case = f"input {execution_input!r}"
            assert described["status"] == "FAILED" and described["error"] == "InvalidExecutionInput", case
            assert events.entered()[-1] == last_state, case
            assert text in described["cause"].replace(" ", "") or text in described["cause"], (case, described["cause"])
            if last_state.endswith("unknown field"):
                assert all(f'"{name}"' in described["cause"] for name in FIELD_NAMES), described["cause"]
            _no_job_started(pipeline, events)


def test_known_fields_with_colons_and_nested_values_pass_the_field_name_check(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unknown-field check counts ':' in the input merged with the schema; values of known fields must not count."""
    given = {"lr": "0.002", "note:with:colons": "a:b"}
    execution_input = {"hyperparameters": given, "dataSource": "s3://invmon-test-data/bins:2/", "deploy": "never", "tuningMaxJobs": 4}
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("colons", execution_input)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert "Input is valid" in events.entered()
    assert {k: _only(events.scheduled(SM, "createTrainingJob.sync"))["HyperParameters"][k] for k in given} == given


BROKEN_RECORDS: list[tuple[str, str]] = [
    ('{"model": "invmon-model-1", "endpointConfig": "invmon-epc-1"}', "Serving record unreadable"),  # no accuracy
    ('[{"accuracy": 0.5}]', "Serving record unreadable"),  # a list: $.serving.record.accuracy is missing
    ('{"accuracy": "0.5"}', "Serving record unreadable"),  # a string, not a number
    ('{"accuracy": 50}', "Serving record unreadable"),  # a percentage, not a fraction
    ("accuracy=0.5", "Read serving record failed"),  # not JSON
]


def test_broken_serving_record_fails_before_any_job_and_notifies(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record is read and checked before Prepare. AWS: a Choice on a missing path would be States.Runtime,
    so the check guards with IsPresent. Not JSON: parsed in the Task's ResultSelector; moto applies the Task's
    Catch. (Which error AWS raises for a StringToJson failure there is not documented; if it were
    States.Runtime the run would still end before any job, reported by the failed-executions alarm.)"""
    with emulated_sagemaker(monkeypatch, Scenario()):
        for number, (body, step) in enumerate(BROKEN_RECORDS):
            pipeline.s3.put_object(Bucket=pipeline.values.artifacts_bucket, Key="serving/current.json", Body=body)
            described, events = pipeline.run(f"broken-record-{number}", {})
            case = f"record {body!r}"
            assert described["status"] == "FAILED" and described["error"] == "PipelineFailed", case
            assert events.entered()[-3:] == [step, "Notify failure", "Run failed"], (case, events.entered())
            (message,) = pipeline.notifications()
            assert f"s3://{pipeline.values.artifacts_bucket}/serving/current.json" in message, case
            assert "deploy=force" in message, case
            _no_job_started(pipeline, events)


@pytest.mark.parametrize(
    "body", [BROKEN_RECORDS[0][0], BROKEN_RECORDS[1][0], BROKEN_RECORDS[4][0]], ids=["no-accuracy", "list", "not-json"]
)
def test_force_and_never_skip_the_serving_record(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """deploy=force deploys whatever the record says (the comparison is skipped); deploy=never does not read it."""
    pipeline.s3.put_object(Bucket=pipeline.values.artifacts_bucket, Key="serving/current.json", Body=body)
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("never", {"deploy": "never"})
        assert described["status"] == "SUCCEEDED", described.get("cause")
        assert "Read serving record" not in events.entered() and "Notify refusal" in events.entered()
        described, events = pipeline.run("forced", {"deploy": "force"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert "Read serving record" not in events.entered() and "Serving record not compared" in events.entered()
    assert pipeline.serving_record()["accuracy"] == Scenario().accuracy  # the broken record was replaced


# --- issue 12: the pretrained weights, as a channel (S3) or as train.py's --pretrained-weights (imagenet / none) ---------


def _channels(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}


def _input_modes(request: dict[str, Any]) -> dict[str, str | None]:
    """Each channel's own InputMode (None: the job's TrainingInputMode applies)."""
    return {c["ChannelName"]: c.get("InputMode") for c in request["InputDataConfig"]}


def test_pretrained_s3_uri_is_the_pretrained_channel_of_every_trial_and_of_training(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real: the Choice and Pass states building InputDataConfig, botocore validating both Create requests. Emulated: jobs end."""
    weights = f"s3://{pipeline.values.artifacts_bucket}/pretrained/resnet18/"
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("pretrained-s3", {"pretrained": weights, "deploy": "never"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert "Add pretrained channel" in events.entered() and "Set pretrained-weights hyperparameter" not in events.entered()

    tuning = _only(events.scheduled(SM, "createHyperParameterTuningJob.sync"))
    training = _only(events.scheduled(SM, "createTrainingJob.sync"))
    described_training = pipeline.sagemaker.describe_training_job(TrainingJobName=training["TrainingJobName"])
    for what, request in (("trial", tuning["TrainingJobDefinition"]), ("training", training), ("moto's record", described_training)):
        channels = _channels(request)
        assert list(channels) == ["train", "validation", "test", "pretrained"], what
        assert channels["pretrained"] == {"S3DataType": "S3Prefix", "S3Uri": weights, "S3DataDistributionType": "FullyReplicated"}, what
        assert channels["train"]["S3Uri"].startswith(f"s3://{pipeline.values.artifacts_bucket}/runs/"), what
    # With the channel, train.py must not get the flag (the flag would win over the channel).
    assert PRETRAINED_HYPERPARAMETER not in tuning["TrainingJobDefinition"]["StaticHyperParameters"]
    assert PRETRAINED_HYPERPARAMETER not in training["HyperParameters"]
    assert tuning["TrainingJobDefinition"]["StaticHyperParameters"]["sagemaker_torch_distributed_enabled"] == "false"
    assert training["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"


@pytest.mark.parametrize("choice", ["imagenet", "none", None], ids=["imagenet", "none", "cdk.json-default"])
def test_imagenet_or_none_is_the_hyperparameter_and_adds_no_channel(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, synth: Any, choice: str | None
) -> None:
    """Real: the flag merged into the trials' static set and over the tuned / given hyperparameters."""
    execution_input: dict[str, Any] = {"deploy": "never"} if choice is None else {"pretrained": choice, "deploy": "never"}
    expected = synth.config.pretrained_weights if choice is None else choice
    assert expected in ("imagenet", "none"), "cdk.json's pretrainedWeights is an S3 prefix: this case needs imagenet or none"
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("weights-flag", execution_input)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        given = {"lr": "0.002", "epochs": "3"}
        described_given, events_given = pipeline.run("weights-flag-given", {**execution_input, "hyperparameters": given})
    assert described_given["status"] == "SUCCEEDED", described_given.get("cause")
    assert "Set pretrained-weights hyperparameter" in events.entered() and "Add pretrained channel" not in events.entered()
    trial = _only(events.scheduled(SM, "createHyperParameterTuningJob.sync"))["TrainingJobDefinition"]
    assert trial["StaticHyperParameters"][PRETRAINED_HYPERPARAMETER] == expected
    assert list(_channels(trial)) == ["train", "validation", "test"]
    for run_events in (events, events_given):
        training = _only(run_events.scheduled(SM, "createTrainingJob.sync"))
        assert training["HyperParameters"][PRETRAINED_HYPERPARAMETER] == expected
        assert list(_channels(training)) == ["train", "validation", "test"]
    assert {k: _only(events_given.scheduled(SM, "createTrainingJob.sync"))["HyperParameters"][k] for k in given} == given


def test_pretrained_outside_the_readable_prefixes_fails_before_any_job(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """An S3 URI the execution role may not read would fail every trial after minutes of paid instance time: refused at once."""
    artifacts = pipeline.values.artifacts_bucket
    cause = (
        'input field "pretrained" must be "imagenet" (the packaged ImageNet weights), "none" (random init) or an S3 URI '
        f"under s3://{artifacts}/pretrained/ (the prefixes the SageMaker execution role may read) holding <model>.pth, "
        f'e.g. "s3://{artifacts}/pretrained/resnet18/"'
    )
    bad = [
        "s3://someone-elses-bucket/pretrained/resnet18/",
        f"s3://{artifacts}/runs/0a1b2c3d/train/",  # readable by the role, but not a weights prefix
        f"s3://{artifacts}/pretrainedx/resnet18/",  # shares the text, not the prefix
        f"S3://{artifacts}/pretrained/resnet18/",
        f"{artifacts}/pretrained/resnet18/",
        "",
    ]
    with emulated_sagemaker(monkeypatch, Scenario()):
        for number, value in enumerate(bad):
            described, events = pipeline.run(f"bad-weights-{number}", {"pretrained": value})
            assert described["status"] == "FAILED" and described["error"] == "InvalidExecutionInput", value
            assert events.entered()[-1] == "Input rejected: pretrained", value
            assert described["cause"] == cause, value
            _no_job_started(pipeline, events)


# --- issue 16: the whole dataset, Prepare sharded across Processing instances, the train channel sharded by S3 key --------

PREPARED_DEFAULT_ARGUMENTS = [
    "--source",
    "s3://aft-vbi-pds/",
    "--file-list",
    FILE_LIST_PATH,
    "--classes",
    "1,2,3,4,5",
    "--output",
    "/opt/ml/processing/output",
    "--auxiliary",  # issue 12: photos with 0 or 6+ items go to train/auxiliary/, which train.py trains on
]


def _prepare_request(events: History) -> dict[str, Any]:
    return events.scheduled(SM, "createProcessingJob.sync")[0]


def _assert_npy_splits(events: History) -> None:
    """The request cdk.json's defaults always made: one instance, the Udacity list, npy, every channel FullyReplicated."""
    prepare = _prepare_request(events)
    assert prepare["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert prepare["AppSpecification"]["ContainerArguments"] == PREPARED_DEFAULT_ARGUMENTS
    parsed = prep.get_args_parser().parse_args(PREPARED_DEFAULT_ARGUMENTS)  # prep.py's own parser accepts the request
    assert parsed.auxiliary and parsed.format == "arrays"
    channels = _channels(_only(events.scheduled(SM, "createTrainingJob.sync")))
    assert {c["S3DataDistributionType"] for c in channels.values()} == {"FullyReplicated"}
    assert channels["train"]["S3Uri"].endswith("/prepare/train/")
    assert _input_modes(_only(events.scheduled(SM, "createTrainingJob.sync")))["train"] == "File"


def _assert_shards(events: History, *, instances: int, subset: bool) -> None:
    """Prepare on `instances` instances writing shards; the train channel streamed (FastFile), every channel FullyReplicated."""
    prepare = _prepare_request(events)
    assert prepare["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == instances
    args = prepare["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--format") + 1] == "shards"
    assert args[args.index("--source") + 1] == "s3://aft-vbi-pds/"
    assert ("--file-list" in args) is subset  # "all": no list, prep.py lists the whole source with paging
    if subset:
        assert args[args.index("--file-list") + 1] == FILE_LIST_PATH
    prepared = prepare["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert args[args.index("--upload-to") + 1] == prepared  # shards go to S3 as they finish, where the output goes
    parsed = prep.get_args_parser().parse_args(args)
    assert parsed.format == "shards" and not parsed.auxiliary  # prep.py refuses --auxiliary with shards
    requests = [_only(events.scheduled(SM, "createTrainingJob.sync"))]
    requests += [t["TrainingJobDefinition"] for t in events.scheduled(SM, "createHyperParameterTuningJob.sync")]
    for request in requests:
        channels = _channels(request)
        assert _input_modes(request) == {"train": "FastFile", "validation": None, "test": None}
        for split in ("train", "validation", "test"):
            assert channels[split] == {
                "S3DataType": "S3Prefix",
                "S3Uri": f"{prepared}{split}/",
                "S3DataDistributionType": "FullyReplicated",
            }
    evaluate = events.scheduled(SM, "createProcessingJob.sync")[1]
    test_input = next(i for i in evaluate["ProcessingInputs"] if i["InputName"] == "test")["S3Input"]
    assert test_input["S3Uri"] == f"{prepared}test/" and test_input["S3DataDistributionType"] == "FullyReplicated"
    assert evaluate["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1


def test_whole_dataset_on_three_prepare_instances_streams_shards(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real: the input checks, the Data format Choice and Passes, botocore validating Prepare/Tune/Train/Evaluate. Emulated: jobs end."""
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("all-3", {"dataset": "all", "prepareInstances": 3, "deploy": "never"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert "Use shards of every photo" in events.entered() and "Use npy splits" not in events.entered()
    _assert_shards(events, instances=3, subset=False)
    training = _only(events.scheduled(SM, "createTrainingJob.sync"))
    described_training = pipeline.sagemaker.describe_training_job(TrainingJobName=training["TrainingJobName"])
    assert _input_modes(described_training)["train"] == "FastFile"


@pytest.mark.parametrize(
    ("execution_input", "instances", "subset"),
    [({"prepareInstances": 2}, 2, True), ({"dataset": "all"}, 1, False), ({"dataset": "subset", "prepareInstances": 4}, 4, True)],
    ids=["subset-on-2", "all-on-1", "subset-on-4"],
)
def test_more_than_one_instance_or_every_photo_means_shards(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, execution_input: dict[str, Any], instances: int, subset: bool
) -> None:
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("shards", {**execution_input, "hyperparameters": {"lr": "0.002"}, "deploy": "never"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    _assert_shards(events, instances=instances, subset=subset)


@pytest.mark.parametrize("execution_input", [{}, {"dataset": "subset", "prepareInstances": 1}], ids=["defaults", "explicit-defaults"])
def test_defaults_keep_the_subset_npy_request(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, execution_input: dict[str, Any]) -> None:
    """cdk.json's defaults (prepareInstanceCount 1, dataFormat npy) and the input's spelled-out defaults: the request as before issue 16."""
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("npy", {**execution_input, "deploy": "never"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert "Use npy splits" in events.entered() and not {"Use shards of the subset", "Use shards of every photo"} & set(events.entered())
    _assert_npy_splits(events)
    trial = _only(events.scheduled(SM, "createHyperParameterTuningJob.sync"))["TrainingJobDefinition"]
    assert {c["S3DataDistributionType"] for c in _channels(trial).values()} == {"FullyReplicated"}


def test_cdk_json_data_format_shards_applies_to_every_run(aws: Any, monkeypatch: pytest.MonkeyPatch, test_values: RenderValues) -> None:
    """cdk.json dataFormat=shards, prepareInstanceCount=2: `{}` prepares the subset as shards on 2 instances (no npy state at all)."""
    from tests.pipeline.conftest import synth_app
    from tests.pipeline.render import render_definition

    synth = synth_app({"dataFormat": "shards", "prepareInstanceCount": 2}, nag=False)
    definition = render_definition(synth.template, synth.storage_template, test_values)
    assert "Use npy splits" not in json.loads(definition)["States"]
    pipeline = Pipeline(definition, test_values)
    with emulated_sagemaker(monkeypatch, Scenario()):
        described, events = pipeline.run("config-shards", {"deploy": "never"})
        assert described["status"] == "SUCCEEDED", described.get("cause")
        _assert_shards(events, instances=2, subset=True)
        described, events = pipeline.run("config-shards-1", {"prepareInstances": 1, "dataset": "all", "deploy": "never"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    _assert_shards(events, instances=1, subset=False)

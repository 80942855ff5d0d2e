"""Runs the pipeline's rendered state machine in moto's real ASL interpreter, with SageMaker emulated.

What is real: moto 5.2.5's Step Functions interpreter (Choice, Catch, Retry, Wait, intrinsics, the
aws-sdk and SNS integrations), botocore's validation of every SageMaker / S3 / SNS / Application Auto
Scaling request against the real API models, moto's S3, SNS and Application Auto Scaling backends.

What is emulated, by this adapter:
- `.sync`: moto has no `.sync` for SageMaker ("Unsupported .sync callback"). SyncSageMakerTask gives it
  the AWS meaning: after the Create call, poll Describe* until the job reaches a terminal status;
  Completed returns the Describe output, Failed/Stopped fail the task with States.TaskFailed and the
  Describe output as Cause (as Step Functions does).
- SageMaker jobs: `EmulatedSageMaker` decides how each job ends (first poll InProgress, then the
  scenario's outcome), sets the tuning job's best hyperparameters, and writes what the Evaluate job
  writes to S3 (evaluation.json from the scenario, gate.json from the real pipeline_gate helper).
- UpdateEndpoint: moto lacks it. The adapter adds it: Updating, then InService on the new config, or
  (scenario `update_fails`) rolled back: InService on the previous config with a FailureReason.
- Endpoint creation passes through Creating before InService, so the Wait/Describe loop really loops.
- Time: Wait states record their seconds instead of sleeping.
- aws-sdk results: moto hands S3 Bodies over as streams and timestamps as datetime objects; Step
  Functions gives strings.
- aws-sdk service ids: Step Functions says "applicationautoscaling" where boto3 says "application-autoscaling".
- Error names of aws-sdk integrations: moto prefixes the lower-case service id ("s3.NoSuchKeyException");
  the adapter uses AWS's spelling ("S3.NoSuchKeyException", "SageMaker....").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.response import StreamingBody
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent, FailureEventException
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_callback,
    state_task_service_unsupported,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import StateTaskService
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "pipeline" / "container"))
import pipeline_gate  # noqa: E402  (the helper the Evaluate job runs; real code)

ACCOUNT = "123456789012"
REGION = "us-east-1"

# action -> (describe method, name parameter, status field)
_SYNC_JOBS = {
    "create_processing_job": ("describe_processing_job", "ProcessingJobName", "ProcessingJobStatus"),
    "create_training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "create_hyper_parameter_tuning_job": (
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobStatus",
    ),
}
_RUNNING = {"InProgress", "Stopping"}


@dataclass
class Scenario:
    """How the emulated SageMaker jobs end. Defaults: everything succeeds, the model beats the gate."""

    best_hyperparameters: dict[str, str] = field(
        default_factory=lambda: {"lr": "0.0012", "batch-size": "64", "epochs": "31", "model": "resnet34"}
    )
    best_objective: float = 0.47
    tuning_fails: str | None = None  # FailureReason, or None
    training_fails: str | None = None
    accuracy: float = 0.46
    majority_baseline: float = 0.255
    update_fails: str | None = None  # the endpoint update rolls back with this reason
    endpoint_stuck: bool = False  # a new endpoint stays Creating forever


class EmulatedSageMaker:
    """Decides job outcomes by editing moto's SageMaker backend objects; writes the Evaluate job's files."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.polls: dict[str, int] = {}
        self.waited_seconds: list[int] = []
        self.pending_updates: dict[str, tuple[str, str | None]] = {}

    @property
    def backend(self) -> Any:
        return sagemaker_backends[ACCOUNT][REGION]

    def advance(self, action: str, name: str) -> None:
        """Called on each Describe poll: the first poll sees InProgress, the next the outcome."""
        count = self.polls[name] = self.polls.get(name, 0) + 1
        finish = count >= 2
        if action == "create_processing_job":
            job = self.backend.processing_jobs[name]
            job.processing_job_status = "Completed" if finish else "InProgress"
            if finish:
                self._write_processing_outputs(job)
        elif action == "create_training_job":
            job = self.backend.training_jobs[name]
            failed = finish and self.scenario.training_fails
            job.training_job_status = ("Failed" if failed else "Completed") if finish else "InProgress"
            job.secondary_status = job.training_job_status
            if failed:
                job.failure_reason = self.scenario.training_fails
        else:
            job = self.backend.hyper_parameter_tuning_jobs[name]
            failed = finish and self.scenario.tuning_fails
            job.hyper_parameter_tuning_job_status = ("Failed" if failed else "Completed") if finish else "InProgress"
            if failed:
                job.failure_reason = self.scenario.tuning_fails
            elif finish:
                job.best_training_job = {
                    **job.best_training_job,
                    "TrainingJobName": f"{name}-003-1a2b3c4d",
                    "TuningJobName": name,
                    "TunedHyperParameters": dict(self.scenario.best_hyperparameters),
                    "FinalHyperParameterTuningJobObjectiveMetric": {
                        "Type": "Maximize",
                        "MetricName": "validation:accuracy",
                        "Value": self.scenario.best_objective,
                    },
                }

    def _write_processing_outputs(self, job: Any) -> None:
        s3 = boto3.client("s3", region_name=REGION)
        for output in job.processing_output_config["Outputs"]:
            bucket, _, prefix = output["S3Output"]["S3Uri"].removeprefix("s3://").partition("/")
            if output["OutputName"] == "evaluation":
                report = {
                    "accuracy": self.scenario.accuracy,
                    "rmse": 1.0,
                    "off_by_one": 0.8,
                    "majority_baseline": self.scenario.majority_baseline,
                    "n": 2088,
                    "classes": [1, 2, 3, 4, 5],
                    "model_version": job.processing_job_name,
                }
                margin = float(job.app_specification["ContainerEntrypoint"][2].split("--margin ")[1].split()[0])
                s3.put_object(Bucket=bucket, Key=f"{prefix}evaluation.json", Body=json.dumps(report))
                s3.put_object(Bucket=bucket, Key=f"{prefix}gate.json", Body=json.dumps(pipeline_gate.gate_numbers(report, margin)))
            else:
                s3.put_object(Bucket=bucket, Key=f"{prefix}summary.json", Body=json.dumps({"written": 10441}))

    # --- endpoints -------------------------------------------------------------------------------------------

    def on_create_endpoint(self, name: str) -> None:
        self.backend.endpoints[name].endpoint_status = "Creating"

    def on_update_endpoint(self, name: str, config_name: str) -> None:
        endpoint = self.backend.endpoints[name]
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f"Cannot update in-progress endpoint {name}.")
        self.backend.describe_endpoint_config(config_name)  # raises ValidationError when absent, as AWS does
        endpoint.endpoint_status = "Updating"
        self.pending_updates[name] = (config_name, self.scenario.update_fails)

    def on_describe_endpoint(self, name: str) -> None:
        """The first Describe after Create/Update sees Creating/Updating; the next one the outcome."""
        endpoint = self.backend.endpoints.get(name)
        if endpoint is None or endpoint.endpoint_status not in ("Creating", "Updating") or self.scenario.endpoint_stuck:
            return
        seen = self.polls[f"endpoint:{name}"] = self.polls.get(f"endpoint:{name}", 0) + 1
        if seen < 2:
            return
        self.polls[f"endpoint:{name}"] = 0
        if endpoint.endpoint_status == "Creating":
            endpoint.endpoint_status = "InService"
        elif endpoint.endpoint_status == "Updating":
            config_name, failure = self.pending_updates.pop(name)
            endpoint.endpoint_status = "InService"
            if failure:
                endpoint.failure_reason = failure  # the previous config keeps serving
            else:
                endpoint.endpoint_config_name = config_name
                endpoint.failure_reason = None


class SyncSageMakerTask(state_task_service_unsupported.StateTaskServiceUnsupported):
    """moto's pass-through SageMaker task, plus `.sync`: poll Describe* until a terminal status."""

    world: EmulatedSageMaker | None = None

    def __init__(self) -> None:
        super().__init__()
        self._supported_integration_patterns = {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync}

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials) -> Callable[[], Any]:
        action = self._get_boto_service_action()
        describe, name_key, status_key = _SYNC_JOBS[action]
        name = normalised_parameters[name_key]
        client = boto_client_for(service="sagemaker", region=resource_runtime_part.region, state_credentials=state_credentials)
        env.stack.pop()  # the Create call's output; .sync's result is the final Describe output
        world = SyncSageMakerTask.world

        def resolve() -> Any | None:
            world.advance(action, name)
            described = getattr(client, describe)(**{name_key: name})
            described.pop("ResponseMetadata", None)
            status = described[status_key]
            if status in _RUNNING:
                return None
            if status == "Completed":
                return json.loads(to_json_str(described))
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(described),
                        )
                    ),
                )
            )

        return resolve


def _body_as_text(original: Callable[..., Any]) -> Callable[..., Any]:
    def eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        original(self, env, resource_runtime_part, normalised_parameters, state_credentials)
        response = env.stack.pop()
        if isinstance(response, dict) and isinstance(response.get("Body"), StreamingBody):
            response["Body"] = response["Body"].read().decode("utf-8")
        env.stack.append(json.loads(to_json_str(response)))  # timestamps as strings, as Step Functions gives them

    return eval_service_task


def _update_endpoint_response(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("EndpointName")
    if name not in self.sagemaker_backend.endpoints:
        raise ValidationError(message=f"Could not find endpoint '{arn_formatter('endpoint', name, self.current_account, self.region)}'.")
    SyncSageMakerTask.world.on_update_endpoint(name, self._get_param("EndpointConfigName"))
    return ActionResult({"EndpointArn": arn_formatter("endpoint", name, self.current_account, self.region)})


@contextmanager
def emulated_sagemaker(monkeypatch: Any, scenario: Scenario) -> Iterator[EmulatedSageMaker]:
    """Install the adapter (undone by monkeypatch at the end of the test)."""
    world = EmulatedSageMaker(scenario)
    monkeypatch.setattr(SyncSageMakerTask, "world", world)
    original_factory = state_task_factory.state_task_service_for
    monkeypatch.setattr(
        state_task_factory,
        "state_task_service_for",
        lambda service_name: SyncSageMakerTask() if service_name == "sagemaker" else original_factory(service_name),
    )
    monkeypatch.setattr(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK", 0)
    monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, "s3", "S3")
    monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, "sagemaker", "SageMaker")
    monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, "applicationautoscaling", "ApplicationAutoScaling")
    monkeypatch.setitem(StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES, "applicationautoscaling", "application-autoscaling")
    aws_sdk = state_task_service_aws_sdk.StateTaskServiceAwsSdk
    monkeypatch.setattr(aws_sdk, "_eval_service_task", _body_as_text(aws_sdk._eval_service_task))
    monkeypatch.setattr(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: world.waited_seconds.append(wait_seconds))
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", _update_endpoint_response, raising=False)

    backend_cls = type(world.backend)
    original_create, original_describe = backend_cls.create_endpoint, backend_cls.describe_endpoint

    def create_endpoint(self, endpoint_name, endpoint_config_name, tags):
        endpoint = original_create(self, endpoint_name, endpoint_config_name, tags)
        world.on_create_endpoint(endpoint_name)
        return endpoint

    def describe_endpoint(self, endpoint_name):
        world.on_describe_endpoint(endpoint_name)
        return original_describe(self, endpoint_name)

    monkeypatch.setattr(backend_cls, "create_endpoint", create_endpoint)
    monkeypatch.setattr(backend_cls, "describe_endpoint", describe_endpoint)
    yield world


def run_execution(sfn_client: Any, state_machine_arn: str, name: str, execution_input: Any, timeout_s: float = 30) -> dict[str, Any]:
    """Start an execution (explicit name: moto needs one) and wait for it to end; returns describe_execution."""
    arn = sfn_client.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input))["executionArn"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sfn_client.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.02)
    raise AssertionError(f"execution {name} still RUNNING after {timeout_s} s")


@dataclass(frozen=True)
class History:
    """An execution's events, with helpers for the assertions."""

    events: list[dict[str, Any]]

    def entered(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.events if e["type"].endswith("StateEntered")]

    def scheduled(self, resource_type: str, resource: str) -> list[dict[str, Any]]:
        """Parameters of every task scheduled on (resource_type, resource), e.g. ("sagemaker", "createTrainingJob.sync")."""
        return [
            json.loads(e["taskScheduledEventDetails"]["parameters"])
            for e in self.events
            if e["type"] == "TaskScheduled"
            and e["taskScheduledEventDetails"]["resourceType"] == resource_type
            and e["taskScheduledEventDetails"]["resource"] == resource
        ]

    def failure(self) -> dict[str, Any]:
        return next(e["executionFailedEventDetails"] for e in self.events if e["type"] == "ExecutionFailed")


def history(sfn_client: Any, execution_arn: str) -> History:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn_client.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return History(events)
        kwargs["nextToken"] = page["nextToken"]

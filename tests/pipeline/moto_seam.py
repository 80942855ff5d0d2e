"""The one place the pipeline tests reach into moto's private internals. Fits moto 5.2.5 (constraints.txt pins it).

moto's public API (`mock_aws`, its boto3-compatible backends) cannot give SageMaker `.sync` its AWS meaning,
add UpdateEndpoint, skip Wait states, or spell aws-sdk error names as AWS does; the private modules below can.
When moto is upgraded, this file is what to check: every private name it uses is imported at the top, and
`install` is the only code that patches them. tests/pipeline/moto_adapter.py (the emulated SageMaker world)
talks to moto only through `install`, `sagemaker_backend` and `SageMakerValidationError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from botocore.response import StreamingBody
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError
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

__all__ = ["SageMakerValidationError", "WorldHooks", "install", "sagemaker_backend"]

# create action -> (describe method, name parameter, status field) of the jobs `.sync` waits for
_SYNC_JOBS = {
    "create_processing_job": ("describe_processing_job", "ProcessingJobName", "ProcessingJobStatus"),
    "create_training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "create_transform_job": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
    "create_hyper_parameter_tuning_job": (
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobStatus",
    ),
}
_RUNNING = {"InProgress", "Stopping"}


class WorldHooks(Protocol):
    """What the emulated SageMaker world is told by the patched moto (tests/pipeline/moto_adapter.py)."""

    def job_started(self, action: str, name: str, request: dict[str, Any]) -> None: ...
    def advance(self, action: str, name: str) -> None: ...
    def on_create_endpoint(self, name: str) -> None: ...
    def on_update_endpoint(self, name: str, config_name: str) -> None: ...
    def on_describe_endpoint(self, name: str) -> None: ...
    def waited(self, seconds: int) -> None: ...


def sagemaker_backend(account: str, region: str) -> Any:
    """moto's SageMaker backend: its job and endpoint objects are what the world edits."""
    return sagemaker_backends[account][region]


class _SyncSageMakerTask(state_task_service_unsupported.StateTaskServiceUnsupported):
    """moto's pass-through SageMaker task, plus `.sync`: poll Describe* until a terminal status.

    Completed returns the Describe output; Failed/Stopped fail the task with States.TaskFailed and the Describe
    output as Cause (as Step Functions does).
    """

    hooks: WorldHooks | None = None

    def __init__(self) -> None:
        super().__init__()
        self._supported_integration_patterns = {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync}

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials) -> Callable[[], Any]:
        action = self._get_boto_service_action()
        describe, name_key, status_key = _SYNC_JOBS[action]
        name = normalised_parameters[name_key]
        client = boto_client_for(service="sagemaker", region=resource_runtime_part.region, state_credentials=state_credentials)
        env.stack.pop()  # the Create call's output; .sync's result is the final Describe output
        hooks = _SyncSageMakerTask.hooks
        hooks.job_started(action, name, normalised_parameters)

        def resolve() -> Any | None:
            hooks.advance(action, name)
            described = getattr(client, describe)(**{name_key: name})
            described.pop("ResponseMetadata", None)
            status = described[status_key]
            if status in _RUNNING:
                return None
            if status == "Completed":
                return json.loads(to_json_str(described))
            raise self._task_failed(env, to_json_str(described))

        return resolve

    def _task_failed(self, env: Any, cause: str) -> FailureEventException:
        return FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                        error=StatesErrorNameType.StatesTaskFailed.to_name(),
                        cause=cause,
                    )
                ),
            )
        )


def _body_as_text(original: Callable[..., Any]) -> Callable[..., Any]:
    """aws-sdk results as Step Functions gives them: S3 Bodies as text (moto: streams), timestamps as strings."""

    def eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        original(self, env, resource_runtime_part, normalised_parameters, state_credentials)
        response = env.stack.pop()
        if isinstance(response, dict) and isinstance(response.get("Body"), StreamingBody):
            response["Body"] = response["Body"].read().decode("utf-8")
        env.stack.append(json.loads(to_json_str(response)))

    return eval_service_task


def _update_endpoint_response(self: SageMakerResponse) -> ActionResult:
    """UpdateEndpoint, which moto lacks: the world decides how the update ends."""
    name = self._get_param("EndpointName")
    if name not in self.sagemaker_backend.endpoints:
        raise SageMakerValidationError(
            message=f"Could not find endpoint '{arn_formatter('endpoint', name, self.current_account, self.region)}'."
        )
    _SyncSageMakerTask.hooks.on_update_endpoint(name, self._get_param("EndpointConfigName"))
    return ActionResult({"EndpointArn": arn_formatter("endpoint", name, self.current_account, self.region)})


def _aws_error_names(monkeypatch: Any) -> None:
    """aws-sdk error names as AWS spells them (moto: "s3.NoSuchKeyException"), and Step Functions' service id."""
    monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, "s3", "S3")
    monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, "sagemaker", "SageMaker")
    monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, "applicationautoscaling", "ApplicationAutoScaling")
    monkeypatch.setitem(StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES, "applicationautoscaling", "application-autoscaling")


def _endpoint_hooks(monkeypatch: Any, backend_cls: type, hooks: WorldHooks) -> None:
    """The world sees every endpoint created and described (Creating/Updating -> outcome on a later Describe)."""
    original_create, original_describe = backend_cls.create_endpoint, backend_cls.describe_endpoint

    def create_endpoint(self, endpoint_name, endpoint_config_name, tags):
        endpoint = original_create(self, endpoint_name, endpoint_config_name, tags)
        hooks.on_create_endpoint(endpoint_name)
        return endpoint

    def describe_endpoint(self, endpoint_name):
        hooks.on_describe_endpoint(endpoint_name)
        return original_describe(self, endpoint_name)

    monkeypatch.setattr(backend_cls, "create_endpoint", create_endpoint)
    monkeypatch.setattr(backend_cls, "describe_endpoint", describe_endpoint)


def install(monkeypatch: Any, hooks: WorldHooks, backend: Any) -> None:
    """Patch moto for one test (monkeypatch undoes it): .sync, UpdateEndpoint, Wait, result shapes, error names."""
    monkeypatch.setattr(_SyncSageMakerTask, "hooks", hooks)
    original_factory = state_task_factory.state_task_service_for
    monkeypatch.setattr(
        state_task_factory,
        "state_task_service_for",
        lambda service_name: _SyncSageMakerTask() if service_name == "sagemaker" else original_factory(service_name),
    )
    monkeypatch.setattr(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK", 0)
    _aws_error_names(monkeypatch)
    aws_sdk = state_task_service_aws_sdk.StateTaskServiceAwsSdk
    monkeypatch.setattr(aws_sdk, "_eval_service_task", _body_as_text(aws_sdk._eval_service_task))
    # Time: Wait states record their seconds instead of sleeping.
    monkeypatch.setattr(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: hooks.waited(wait_seconds))
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", _update_endpoint_response, raising=False)
    _endpoint_hooks(monkeypatch, type(backend), hooks)

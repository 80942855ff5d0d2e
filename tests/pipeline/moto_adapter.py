"""Runs the pipeline's rendered state machine in moto's real ASL interpreter, with SageMaker emulated.

What is real: moto 5.2.5's Step Functions interpreter (Choice, Catch, Retry, Wait, intrinsics, the
aws-sdk and SNS integrations), botocore's validation of every SageMaker / S3 / SNS / Application Auto
Scaling request against the real API models, moto's S3, SNS and Application Auto Scaling backends.
Every patch of moto's private internals sits in tests/pipeline/moto_seam.py.

What is emulated, by this adapter:
- `.sync`: moto has no `.sync` for SageMaker ("Unsupported .sync callback"). moto_seam's sync task gives it
  the AWS meaning: after the Create call, poll Describe* until the job reaches a terminal status;
  Completed returns the Describe output, Failed/Stopped fail the task with States.TaskFailed and the
  Describe output as Cause (as Step Functions does).
- SageMaker jobs: `EmulatedSageMaker` decides how each job ends (first poll InProgress, then the
  scenario's outcome), sets the tuning job's best hyperparameters, and writes what the Evaluate job
  writes to S3: evaluation.json from the scenario, gate.json by running the job's own deploy_rule.py
  command line (its script and environment from the CreateProcessingJob request) on a local copy.
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
import shlex
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import deploy_rule

from tests.pipeline import moto_seam

ACCOUNT = "123456789012"
REGION = "us-east-1"


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
    broken_gate_file: Any = None  # what gate.json holds instead of deploy_rule.py's output (a job gone wrong)


class EmulatedSageMaker:
    """Decides job outcomes by editing moto's SageMaker backend objects; writes the Evaluate job's files."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.polls: dict[str, int] = {}
        self.waited_seconds: list[int] = []
        self.pending_updates: dict[str, tuple[str, str | None]] = {}
        self.requests: dict[str, dict[str, Any]] = {}  # job name -> its Create request (moto drops some fields)
        self.gate_decisions: list[dict[str, Any]] = []  # what each Evaluate job's deploy_rule.py wrote

    @property
    def backend(self) -> Any:
        return moto_seam.sagemaker_backend(ACCOUNT, REGION)

    # --- jobs (moto_seam.WorldHooks) -------------------------------------------------------------------------

    def job_started(self, action: str, name: str, request: dict[str, Any]) -> None:
        self.requests[name] = request

    def advance(self, action: str, name: str) -> None:
        """Called on each Describe poll: the first poll sees InProgress, the next the outcome."""
        count = self.polls[name] = self.polls.get(name, 0) + 1
        finish = count >= 2
        if action == "create_processing_job":
            job = self.backend.processing_jobs[name]
            failure = self._write_processing_outputs(job) if finish else None
            job.processing_job_status = ("Failed" if failure else "Completed") if finish else "InProgress"
            if failure:
                job.failure_reason = failure
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

    def _write_processing_outputs(self, job: Any) -> str | None:
        """Upload what the job writes; returns a FailureReason when its script would have exited non-zero."""
        s3 = boto3.client("s3", region_name=REGION)
        for output in job.processing_output_config["Outputs"]:
            bucket, _, prefix = output["S3Output"]["S3Uri"].removeprefix("s3://").partition("/")
            if output["OutputName"] != "evaluation":
                s3.put_object(Bucket=bucket, Key=f"{prefix}summary.json", Body=json.dumps({"written": 10441}))
                continue
            report = {
                "accuracy": self.scenario.accuracy,
                "rmse": 1.0,
                "off_by_one": 0.8,
                "majority_baseline": self.scenario.majority_baseline,
                "n": 2088,
                "classes": [1, 2, 3, 4, 5],
                "model_version": job.processing_job_name,
            }
            s3.put_object(Bucket=bucket, Key=f"{prefix}evaluation.json", Body=json.dumps(report))
            gate = self._run_gate_command(self.requests[job.processing_job_name], report)
            if gate is None:
                return "AlgorithmError: deploy_rule.py exited with code 2"
            self.gate_decisions.append(gate)
            written = gate if self.scenario.broken_gate_file is None else self.scenario.broken_gate_file
            s3.put_object(Bucket=bucket, Key=f"{prefix}gate.json", Body=json.dumps(written))
        return None

    @staticmethod
    def _run_gate_command(request: dict[str, Any], report: dict[str, Any]) -> dict[str, Any] | None:
        """The job's own `python3 deploy_rule.py ...` (after evaluate.py in its script), its $VARIABLES from the
        request's Environment, run for real with the container's paths replaced by local files."""
        script = request["AppSpecification"]["ContainerEntrypoint"][2]
        words = shlex.split(script.split("exec ", 1)[1])
        assert words[:2] == ["python3", "deploy_rule.py"], words
        environment = request.get("Environment", {})
        argv = [environment[word[1:]] if word.startswith("$") else word for word in words[2:]]
        with tempfile.TemporaryDirectory() as tmp:
            evaluation, gate = Path(tmp) / "evaluation.json", Path(tmp) / "gate.json"
            evaluation.write_text(json.dumps(report))
            argv[argv.index("--evaluation") + 1] = str(evaluation)
            argv[argv.index("--output") + 1] = str(gate)
            return json.loads(gate.read_text()) if deploy_rule.main(argv) == 0 else None

    # --- endpoints --------------------------------------------------------------------------------------------

    def on_create_endpoint(self, name: str) -> None:
        self.backend.endpoints[name].endpoint_status = "Creating"

    def on_update_endpoint(self, name: str, config_name: str) -> None:
        endpoint = self.backend.endpoints[name]
        if endpoint.endpoint_status != "InService":
            raise moto_seam.SageMakerValidationError(message=f"Cannot update in-progress endpoint {name}.")
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

    def waited(self, seconds: int) -> None:
        self.waited_seconds.append(seconds)


@contextmanager
def emulated_sagemaker(monkeypatch: Any, scenario: Scenario) -> Iterator[EmulatedSageMaker]:
    """Install the adapter (undone by monkeypatch at the end of the test)."""
    world = EmulatedSageMaker(scenario)
    moto_seam.install(monkeypatch, world, world.backend)
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


class TopicInbox:
    """What an SNS topic publishes, collected by an SQS queue subscribed to it with raw delivery (moto's SNS and SQS)."""

    def __init__(self, topic_arn: str, queue_name: str = "notifications") -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = self.sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns = boto3.client("sns", region_name=REGION)
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def messages(self) -> list[str]:
        """What the topic published since the last call (read and deleted)."""
        received = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in received:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return [message["Body"] for message in received]

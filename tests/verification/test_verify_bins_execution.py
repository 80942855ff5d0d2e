"""The "Verify bins" state machine EXECUTED in moto: a normal run, broken photos and records, a transform failure
and a Prepare batches failure (each described first), a summary that cannot be published, refused input and no
serving model.

Real: the definition rendered from the synthesized pipeline stack, moto's ASL interpreter, botocore's validation of
every request, moto's S3/SNS, and the jobs' own code (verify_prepare.py, inference.py, verify_report.py) on real
photos and a real trained model. Emulated (tests/verification/emulated_world.py): where each job's container runs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import boto3
import inference
import pytest
import verification
from moto import mock_aws
from moto.sns.exceptions import SNSException
from moto.sns.models import SNSBackend

from tests.pipeline.moto_adapter import REGION, History, TopicInbox, history, run_execution
from tests.pipeline.moto_seam import SageMakerValidationError, install
from tests.pipeline.render import ACCOUNT, RenderValues, render_definition
from tests.verification.emulated_world import VerifyScenario, VerifyWorld

pytestmark = pytest.mark.slow

MODEL_NAME = "invmon-model-1a2b3c4d"
PHOTOS = 12


@pytest.fixture(scope="module")
def verify_definition() -> str:
    from tests.pipeline.conftest import synth_app

    synth = synth_app(nag=False)
    return render_definition(synth.template, synth.storage_template, RenderValues(), machine="VerifyBins")


class VerifyBinsMachine:
    """The state machine in moto with the buckets, a serving record, the photos and an SQS subscriber on the topic."""

    def __init__(self, definition: str, values: RenderValues, bucket_folder: Path) -> None:
        self.values = values
        self.s3 = boto3.client("s3", region_name=REGION)
        for bucket in (values.artifacts_bucket, values.data_bucket):
            self.s3.create_bucket(Bucket=bucket)
        self.ids = sorted(p.stem for p in (bucket_folder / "bin-images").glob("*.jpg"))[:PHOTOS]
        for bin_id in self.ids:
            self.put(f"in/bin-images/{bin_id}.jpg", (bucket_folder / "bin-images" / f"{bin_id}.jpg").read_bytes())
            self.put(f"in/metadata/{bin_id}.json", (bucket_folder / "metadata" / f"{bin_id}.json").read_bytes())
        sns = boto3.client("sns", region_name=REGION)
        sns.create_topic(Name=values.topic_name)
        self.inbox = TopicInbox(values.topic_arn)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        role = f"arn:aws:iam::{ACCOUNT}:role/test-states"
        self.arn = self.sfn.create_state_machine(name="verify-bins", definition=definition, roleArn=role)["stateMachineArn"]

    def put(self, key: str, body: bytes | str, bucket: str | None = None) -> None:
        self.s3.put_object(Bucket=bucket or self.values.data_bucket, Key=key, Body=body)

    def serve(self, record: dict[str, Any]) -> None:
        self.put("serving/current.json", json.dumps(record), bucket=self.values.artifacts_bucket)

    def run(self, name: str, execution_input: Any) -> tuple[dict[str, Any], History]:
        described = run_execution(self.sfn, self.arn, name, execution_input, timeout_s=120)
        return described, history(self.sfn, described["executionArn"])

    def notifications(self) -> list[str]:
        return self.inbox.messages()

    def report(self, name: str) -> bytes:
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.values.artifacts_bucket, Prefix="verify/")["Contents"]]
        (key,) = [k for k in keys if k.endswith(f"/report/{name}")]
        return self.s3.get_object(Bucket=self.values.artifacts_bucket, Key=key)["Body"].read()

    def results(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.report("results.csv").decode())))


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, verify_definition: str, synthetic_bucket: Path) -> VerifyBinsMachine:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield VerifyBinsMachine(verify_definition, RenderValues(), synthetic_bucket)


def world(monkeypatch: pytest.MonkeyPatch, trained: Path, **scenario: Any) -> VerifyWorld:
    verify_world = VerifyWorld(VerifyScenario(model_dir=trained / "model", **scenario))
    install(monkeypatch, verify_world, verify_world.backend)
    return verify_world


def photos_uri(machine: VerifyBinsMachine) -> str:
    return f"s3://{machine.values.data_bucket}/in/"


def test_a_normal_run_reports_every_bin_and_notifies(machine, monkeypatch, trained):
    machine.serve({"model": MODEL_NAME, "accuracy": 0.5})
    verify_world = world(monkeypatch, trained)
    described, events = machine.run("normal", {"photos": photos_uri(machine)})

    assert described["status"] == "SUCCEEDED", described.get("cause")
    entered = events.entered()
    assert entered.index("Prepare batches") < entered.index("Transform") < entered.index("Write report") < entered.index("Notify summary")
    transform = events.scheduled("sagemaker", "createTransformJob.sync")[0]
    assert transform["ModelName"] == MODEL_NAME
    assert transform["TransformResources"]["InstanceType"] == "ml.m5.xlarge" and transform["TransformResources"]["InstanceCount"] == 1
    # cdk.json's verifyViews reaches the container as the variable inference.py's model_fn reads
    assert transform["Environment"] == {inference.VIEWS_ENV: verification.DEFAULT_BULK_VIEWS}
    assert verify_world.loaded_views() == [verification.DEFAULT_BULK_VIEWS]
    assert [action for action, _ in verify_world.started] == ["create_processing_job", "create_transform_job", "create_processing_job"]

    results = machine.results()
    assert sorted(row["bin_id"] for row in results) == machine.ids  # every input row exactly once
    assert all(row["verdict"] in ("match", "mismatch", "review") and not row["error"] for row in results)
    summary = json.loads(machine.report("summary.json"))
    assert summary["rows"] == PHOTOS and summary["rows_with_errors"] == 0 and sum(summary["verdicts"].values()) == PHOTOS
    assert b"<html" in machine.report("report.html").lower()
    (message,) = machine.notifications()
    assert "Summary: {" in message and "report.html" in message and f'"rows":{PHOTOS}' in message.replace(" ", "")


def test_broken_photos_and_records_are_rows_with_errors_not_a_failed_run(machine, monkeypatch, trained):
    machine.serve({"model": MODEL_NAME})
    machine.put("in/bin-images/corrupt.jpg", b"not a jpeg at all")
    good = machine.ids[:4]
    rows = [[good[0], "3"], [good[1], "two"], [good[2], "-1"], ["no-such-bin", "2"], ["corrupt", "1"], [good[3], "4"], [good[3], "4"]]
    machine.put("records/check.csv", "bin_id,expected_count\n" + "\n".join(",".join(r) for r in rows) + "\n")
    records = f"s3://{machine.values.data_bucket}/records/check.csv"
    verify_world = world(monkeypatch, trained)
    described, events = machine.run("broken", {"photos": photos_uri(machine), "records": records, "instanceCount": 2, "views": "served"})

    assert described["status"] == "SUCCEEDED", described.get("cause")
    transform = events.scheduled("sagemaker", "createTransformJob.sync")[0]
    assert transform["TransformResources"]["InstanceCount"] == 2
    assert transform["Environment"] == {inference.VIEWS_ENV: "served"} and verify_world.loaded_views() == ["served"]
    results = machine.results()
    assert len(results) == len(rows)  # every CSV row exactly once, in input order
    assert [r["bin_id"] for r in results] == [r[0] for r in rows]
    errors = [r["error"] for r in results]
    assert errors[0] == "" and errors[5] == ""
    assert all(errors[i] for i in (1, 2, 3, 4, 6)), errors
    summary = json.loads(machine.report("summary.json"))
    assert summary["rows_with_errors"] == 5 and sum(summary["errors"].values()) == 5


def assert_job_failure_leads(
    machine: VerifyBinsMachine, described: dict[str, Any], events: History, step: str, job: tuple[str, str], reason: str
) -> str:
    """A failed SageMaker job (`job`: its kind and console page kind), described first: the message leads with the step,
    the job's name, its FailureReason and its console page, not with the .sync Cause (the whole Describe answer).
    Returns the job's name from the message."""
    label, console_kind = job
    assert described["status"] == "FAILED" and described["error"] == "VerifyBinsFailed"
    assert events.entered()[-5:] == [
        f"Describe failed {step} job",
        f"{step} job has a FailureReason?",
        f"{step} job failed",
        "Notify failure",
        "Verify failed",
    ]
    (message,) = machine.notifications()
    lead = f"Verify bins failed at {step}: {label} "
    assert message.startswith(lead), message
    name = message.removeprefix(lead).split(" ")[0]
    console = f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}#/{console_kind}/{name}"
    assert f"ended Failed. FailureReason: {reason} Console: {console} (States.TaskFailed). Input: " in message
    assert described["cause"].startswith(f"{label} {name} ended Failed")
    failure = message.split(". Input: ")[0]
    assert "JobArn" not in failure and len(failure) < 300 + len(reason), failure
    return name


def test_a_transform_failure_notifies_the_job_its_reason_and_its_console_page(machine, monkeypatch, trained):
    machine.serve({"model": MODEL_NAME})
    reason = "ClientError: the model container exited"
    world(monkeypatch, trained, transform_fails=reason)
    described, events = machine.run("transform-fails", {"photos": photos_uri(machine)})

    name = assert_job_failure_leads(machine, described, events, "Transform", ("transform job", "transform-jobs"), reason)
    assert name == events.scheduled("sagemaker", "createTransformJob.sync")[0]["TransformJobName"]
    assert "Write report" not in events.entered()


def test_a_prepare_failure_notifies_the_processing_job_and_its_reason(machine, monkeypatch, trained):
    """Real: verify_prepare.py refuses a records CSV without the bin_id,expected_count header (exit status 2)."""
    machine.serve({"model": MODEL_NAME})
    machine.put("records/wrong.csv", f"id,count\n{machine.ids[0]},1\n")
    verify_world = world(monkeypatch, trained)
    records = f"s3://{machine.values.data_bucket}/records/wrong.csv"
    described, events = machine.run("prepare-fails", {"photos": photos_uri(machine), "records": records})

    reason = "AlgorithmError: verify_prepare.py exited with status 2"
    name = assert_job_failure_leads(machine, described, events, "Prepare batches", ("processing job", "processing-jobs"), reason)
    assert verify_world.started == [("create_processing_job", name)]
    assert "Transform" not in events.entered()


def refuse_describing_failed_transforms(monkeypatch: pytest.MonkeyPatch, verify_world: VerifyWorld) -> None:
    """DescribeTransformJob answers an error once the job has failed (after .sync's own poll saw it fail)."""
    backend_cls = type(verify_world.backend)
    original = backend_cls.describe_transform_job
    seen_failed: set[str] = set()

    def describe_transform_job(self: Any, transform_job_name: str) -> dict[str, Any]:
        described = original(self, transform_job_name)
        if described["TransformJobStatus"] == "Failed":
            if transform_job_name in seen_failed:
                raise SageMakerValidationError(message="refused by the test")
            seen_failed.add(transform_job_name)
        return described

    monkeypatch.setattr(backend_cls, "describe_transform_job", describe_transform_job)


def test_a_failed_describe_still_notifies_the_failure(machine, monkeypatch, trained):
    """The describe is only a better message: when it fails, the notification carries the .sync error as before."""
    machine.serve({"model": MODEL_NAME})
    reason = "ClientError: the model container exited"
    refuse_describing_failed_transforms(monkeypatch, world(monkeypatch, trained, transform_fails=reason))
    described, events = machine.run("describe-fails", {"photos": photos_uri(machine)})

    assert described["status"] == "FAILED"
    assert events.entered()[-4:] == ["Describe failed Transform job", "Transform: failed", "Notify failure", "Verify failed"]
    (message,) = machine.notifications()
    assert message.startswith("Verify bins failed at Transform: {") and reason in message and "(States.TaskFailed)" in message


SUMMARY_SUBJECT = "bins verified"  # Notify summary's subject: "<prefix>: bins verified (<id>)"
FAILURE_SUBJECT = "Verify bins failed"  # Notify failure's


def refuse_publishing(monkeypatch: pytest.MonkeyPatch, *subjects: str) -> None:
    """moto's SNS refuses a Publish whose subject holds one of `subjects`, as SNS does a caller it does not authorize."""
    original = SNSBackend.publish

    def publish(self: Any, message: str, arn: str | None, **kwargs: Any) -> str:
        if any(subject in (kwargs.get("subject") or "") for subject in subjects):
            raise SNSException("AuthorizationError", "User is not authorized to perform: SNS:Publish (refused by the test)")
        return original(self, message, arn, **kwargs)

    monkeypatch.setattr(SNSBackend, "publish", publish)


def test_a_summary_that_cannot_be_published_fails_the_run_and_says_so(machine, monkeypatch, trained):
    """A run nobody was told about is not a success: Notify summary's failure goes to Notify failure, as any other step's."""
    machine.serve({"model": MODEL_NAME})
    world(monkeypatch, trained)
    refuse_publishing(monkeypatch, SUMMARY_SUBJECT)
    described, events = machine.run("summary-refused", {"photos": photos_uri(machine)})

    assert described["status"] == "FAILED" and described["error"] == "VerifyBinsFailed"
    assert events.entered()[-4:] == ["Notify summary", "Notify summary: failed", "Notify failure", "Verify failed"]
    assert "refused by the test" in described["cause"]
    (message,) = machine.notifications()
    assert message.startswith("Verify bins failed at Notify summary: ") and "(SNS.AuthorizationErrorException)" in message
    assert json.loads(machine.report("summary.json"))["rows"] == PHOTOS  # the report was written: only telling failed


def test_a_run_that_cannot_publish_at_all_still_fails_with_its_own_error(machine, monkeypatch, trained):
    """As the training pipeline's: a failure notification that cannot be published ends in Verify failed, with the failure
    it was to report (Notify summary's) as the cause, not with the second publish's error."""
    machine.serve({"model": MODEL_NAME})
    world(monkeypatch, trained)
    refuse_publishing(monkeypatch, SUMMARY_SUBJECT, FAILURE_SUBJECT)
    described, events = machine.run("all-refused", {"photos": photos_uri(machine)})

    assert described["status"] == "FAILED" and described["error"] == "VerifyBinsFailed"
    assert events.entered()[-3:] == ["Notify summary: failed", "Notify failure", "Verify failed"]
    assert "refused by the test" in described["cause"]
    assert machine.notifications() == []


@pytest.mark.parametrize(
    ("execution_input", "expected"),
    [
        ({}, "photos is required"),
        ({"photos": "s3://somebody-elses-bucket/photos/"}, "photos must be an s3:// prefix under"),
        ({"photos": "PHOTOS", "records": "file:///tmp/records.csv"}, "records must be the s3:// URI of a CSV"),
        ({"photos": "PHOTOS", "instanceCount": 0}, "instanceCount must be a whole number from 1 to 20"),
        ({"photos": "PHOTOS", "instanceCount": 2.5}, "instanceCount must be a whole number from 1 to 20, such as 2, not 2.5"),
        ({"photos": "PHOTOS", "instanceType": "m5.xlarge"}, "instanceType must be a SageMaker instance type"),
        ({"photos": "PHOTOS", "instancetype": "ml.c5.xlarge"}, "may hold only photos, records, instanceType, instanceCount, views"),
        ({"photos": "PHOTOS", "views": "flip4"}, "views must be one of served, one"),
        ({"photos": "PHOTOS", "views": 1}, "views must be one of served, one"),
        (["s3://a/"], "must be a JSON object"),
        ("s3://a/", "must be a JSON object"),
    ],
)
def test_bad_input_is_refused_before_any_job(machine, monkeypatch, trained, execution_input, expected):
    if isinstance(execution_input, dict) and execution_input.get("photos") == "PHOTOS":
        execution_input = {**execution_input, "photos": photos_uri(machine)}
    verify_world = world(monkeypatch, trained)
    described, _ = machine.run("bad-input", execution_input)

    assert described["status"] == "FAILED" and verify_world.started == []
    (message,) = machine.notifications()
    assert message.startswith("Verify bins failed at Check input") and expected in message


def test_without_a_serving_model_it_says_to_train_first(machine, monkeypatch, trained):
    verify_world = world(monkeypatch, trained)
    described, _ = machine.run("no-model", {"photos": photos_uri(machine)})

    assert described["status"] == "FAILED" and verify_world.started == []
    (message,) = machine.notifications()
    assert "no model serves yet: run the training pipeline" in message

"""The Verify bins state machine's IAM checked against references we did not write, on concrete ARNs.

The same method as tests/infra/test_iam_reference.py (whose helpers this file uses): for every Task, the state
machine's role must allow what CDK's own task class grants (SageMakerCreateTransformJob, SnsPublish,
CallAwsService, also for the Describe*Job calls of the failure path) or, for Processing (no CDK class), what the
Step Functions developer guide lists; the jobs' role (the pipeline's SageMaker execution role, which is also the
serving model's role that Batch Transform runs as) must allow what each job reads and writes, derived from the
Task's own Parameters and the execution input.
Evaluated by tests/infra/policy_eval.py (moto's IAM engine plus the condition operators moto ignores).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.test_iam_reference import (
    RUN_ID,
    Built,
    Request,
    _denied,
    _ecr,
    _format_run,
    _integration,
    _logs_and_metrics,
    _s3_read,
    _s3_write,
    built_from,
    concrete,
    derived_caller_needs,
    sm_arn,
    state_machine_references,
)
from tests.pipeline.render import RenderValues

MODEL = f"invmon-model-{RUN_ID}"


def verify_document(states: dict[str, dict[str, Any]], values: RenderValues, records: str) -> dict[str, Any]:
    """The state document of a run (names and paths from the definition's own "Name jobs and paths" state)."""
    (layout,) = [s["Parameters"] for s in states.values() if s["Type"] == "Pass" and "names" in s.get("Parameters", {})]
    return {
        "verify": {"id": RUN_ID},
        "names": {k.removesuffix(".$"): _format_run(v) for k, v in layout["names"].items()},
        "paths": {k.removesuffix(".$"): _format_run(v) for k, v in layout["paths"].items()},
        "settings": {
            "photos": f"s3://{values.data_bucket}/verify/in/",
            "records": records,
            "instanceType": "ml.m5.xlarge",
            "instanceCount": 1,
        },
        "serving": {"record": {"model": MODEL}},
    }


@pytest.fixture(scope="module", params=["metadata-records", "csv-records"])
def built(request: pytest.FixtureRequest) -> Built:
    from tests.pipeline.conftest import synth_app

    def document(states: dict[str, dict[str, Any]], values: RenderValues) -> dict[str, Any]:
        records = "" if request.param == "metadata-records" else f"s3://{values.data_bucket}/verify/records.csv"
        return verify_document(states, values, records)

    return built_from(request.param, synth_app(nag=False), machine="VerifyBins", state_machine_role="VerifyBinsRole", document=document)


def jobs_role_needs(built: Built) -> dict[str, list[Request]]:
    """What each job reads and writes, from its Parameters and the execution input it is given."""
    needs: dict[str, list[Request]] = {}
    settings = built.doc["settings"]
    for name, state in built.tasks.items():
        integration = _integration(state["Resource"])
        p = concrete(state["Parameters"], built.doc)
        out: list[Request] = []
        if integration == "sagemaker:createProcessingJob.sync":
            assert p["RoleArn"] == built.execution_role_arn
            out += _ecr(p["AppSpecification"]["ImageUri"], name)
            for item in p["ProcessingInputs"]:
                out += _s3_read(built, item["S3Input"]["S3Uri"], f"{name}: input {item['InputName']}")
            config = p["ProcessingOutputConfig"]
            for item in config["Outputs"]:
                out += _s3_write(built, item["S3Output"]["S3Uri"], "records/records.jsonl", f"{name}: output", config.get("KmsKeyId"))
            out.append(Request("kms:CreateGrant", p["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"], why=f"{name}: volume key"))
            job = p["ProcessingJobName"]
            out += _logs_and_metrics("/aws/sagemaker/ProcessingJobs", f"{job}/algo-1-1700000000", "/aws/sagemaker/ProcessingJobs", name)
            # Both scripts read the photos (prepare: every photo; report: thumbnails) from the --source the input names.
            out += _s3_read(built, settings["photos"] + "bin-images/", f"{name}: photos")
            out += _s3_read(built, settings["photos"] + "metadata/", f"{name}: metadata records")
            if settings["records"] and "verify_prepare" in json.dumps(p["AppSpecification"]):
                out += _s3_read(built, settings["records"], f"{name}: records CSV", prefix=False)
        elif integration == "sagemaker:createTransformJob.sync":
            # Batch Transform runs as the model's execution role (CreateModel's ExecutionRoleArn: the pipeline's role).
            out += _s3_read(built, p["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"], f"{name}: batches")
            output = p["TransformOutput"]
            out += _s3_write(
                built, output["S3OutputPath"], "batch-000000.npy.out", f"{name}: replies", output.get("KmsKeyId"), encrypt=True
            )
            out += _logs_and_metrics(
                "/aws/sagemaker/TransformJobs", f"{p['TransformJobName']}/i-0123", "/aws/sagemaker/TransformJobs", name
            )
        if out:
            needs[name] = out
    return needs


@pytest.fixture(scope="module")
def references(built: Built) -> dict[str, list[Request]]:
    return state_machine_references(built)


def test_every_task_has_a_reference(built, references):
    integrations = {_integration(s["Resource"]) for s in built.tasks.values()}
    assert integrations == {
        "aws-sdk:s3:getObject",
        "aws-sdk:sagemaker:describeProcessingJob",
        "aws-sdk:sagemaker:describeTransformJob",
        "sagemaker:createProcessingJob.sync",
        "sagemaker:createTransformJob.sync",
        "sns:publish",
    }
    assert set(references) == set(built.tasks) and all(references.values())


def test_each_failed_job_is_described_by_the_name_it_was_started_with(built, references):
    """The failure path's Describe*Job names the job its Task started; its reference request is that job's ARN."""
    jobs = {name: state for name, state in built.tasks.items() if _integration(state["Resource"]).endswith("Job.sync")}
    assert len(jobs) == 3
    for state in jobs.values():
        started = concrete(state["Parameters"], built.doc)
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        describe = built.tasks[catch["Next"]]
        ((field, job_name),) = concrete(describe["Parameters"], built.doc).items()
        assert started[field] == job_name and job_name.startswith("invmon-v")
        action = "sagemaker:D" + _integration(describe["Resource"]).removeprefix("aws-sdk:sagemaker:d")
        assert any(r.action == action and r.resource.endswith(f"-job/{job_name}") for r in references[catch["Next"]])


def test_state_machine_role_allows_what_cdk_and_the_docs_grant(built, references):
    assert _denied(built.state_machine_role, references) == []


def test_state_machine_role_allows_what_the_parameters_imply(built):
    needs = derived_caller_needs(built)
    assert any(r.action == "kms:Decrypt" for reqs in needs.values() for r in reqs)
    assert _denied(built.state_machine_role, needs) == []


def test_jobs_role_allows_what_each_job_reads_and_writes(built):
    needs = jobs_role_needs(built)
    assert {n for n, s in built.tasks.items() if ".sync" in s["Resource"]} == set(needs)
    assert _denied(built.execution_role, needs) == []


def test_roles_stay_scoped_to_verify_runs(built):
    sm, jobs = built.state_machine_role, built.execution_role
    artifacts = built.resolver.values.artifacts_bucket
    assert not sm.allows("sagemaker:CreateTransformJob", sm_arn("transform-job", f"other-vbt-{RUN_ID}"))
    assert not sm.allows("sagemaker:CreateTrainingJob", sm_arn("training-job", f"invmon-train-{RUN_ID}"))
    # The failure path describes this stack's verify jobs only.
    assert sm.allows("sagemaker:DescribeTransformJob", sm_arn("transform-job", f"invmon-vbt-{RUN_ID}"))
    assert not sm.allows("sagemaker:DescribeTransformJob", sm_arn("transform-job", f"other-vbt-{RUN_ID}"))
    assert not sm.allows("sagemaker:DescribeProcessingJob", sm_arn("processing-job", f"other-vprep-{RUN_ID}"))
    assert not sm.allows("sagemaker:DescribeProcessingJob", sm_arn("processing-job", f"invmon-prep-{RUN_ID}"))
    assert not sm.allows("s3:PutObject", f"arn:aws:s3:::{artifacts}/serving/current.json")
    assert not jobs.allows("s3:PutObject", f"arn:aws:s3:::{artifacts}/serving/current.json")
    assert not jobs.allows("s3:GetObject", "arn:aws:s3:::somebody-elses-bucket/bin-images/1.jpg")
    assert not jobs.allows("s3:PutObject", f"arn:aws:s3:::{built.resolver.values.data_bucket}/verify/in/bin-images/1.jpg")

"""The SageMaker world the "Verify bins" state machine meets in moto: its three jobs run the real code.

Real: moto's Step Functions interpreter (through tests/pipeline/moto_seam.py, `.sync` included), moto's S3 and
SNS, botocore's validation of every request, and the jobs' own code: training_code/verify_prepare.py reads the
photos and records from (moto's) S3 exactly as in the Processing container, the Batch Transform emulation sends
each batch file through training_code/inference.py's model_fn / input_fn / predict_fn / output_fn with a real
trained model, and verify_report.py joins the replies with the records.
Emulated: where SageMaker would run a container, the job's code runs in this process, its ProcessingInputs
downloaded into and its outputs uploaded from a temporary folder in place of /opt/ml/processing; a transform
failure (`Scenario.transform_fails`) ends the job Failed with that reason.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import boto3
import inference
import verify_prepare
import verify_report

from tests.pipeline.moto_seam import sagemaker_backend
from tests.pipeline.render import ACCOUNT, REGION

PROCESSING_ROOT = "/opt/ml/processing"


@dataclass
class VerifyScenario:
    model_dir: Path
    transform_fails: str | None = None  # the FailureReason, or None for a transform that completes


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def download_prefix(uri: str, folder: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    bucket, prefix = _split(uri)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = folder / item["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def upload_folder(folder: Path, uri: str) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    bucket, prefix = _split(uri)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.put_object(Bucket=bucket, Key=prefix + path.relative_to(folder).as_posix(), Body=path.read_bytes())


class VerifyWorld:
    """tests/pipeline/moto_seam.WorldHooks for the Verify bins jobs: first poll InProgress, then the job really runs."""

    def __init__(self, scenario: VerifyScenario) -> None:
        self.scenario = scenario
        self.polls: dict[str, int] = {}
        self.started: list[tuple[str, str]] = []
        self.requests: dict[str, dict[str, Any]] = {}
        self._model: Any = None

    @property
    def backend(self) -> Any:
        return sagemaker_backend(ACCOUNT, REGION)

    def job_started(self, action: str, name: str, request: dict[str, Any]) -> None:
        self.started.append((action, name))
        self.requests[name] = request

    def advance(self, action: str, name: str) -> None:
        self.polls[name] = self.polls.get(name, 0) + 1
        if self.polls[name] < 2:
            self._set_status(action, name, "InProgress")
        elif action == "create_processing_job":
            self._run_processing(self.backend.processing_jobs[name])
        elif action == "create_transform_job":
            self._run_transform(self.backend.transform_jobs[name])

    def _set_status(self, action: str, name: str, status: str) -> None:
        if action == "create_processing_job":
            self.backend.processing_jobs[name].processing_job_status = status
        else:
            self.backend.transform_jobs[name].transform_job_status = status

    # --- Processing: verify_prepare.py / verify_report.py with /opt/ml/processing mapped to a temporary folder ----------
    def _run_processing(self, job: Any) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)

            def local(path: str) -> str:
                return str(root / path.removeprefix(PROCESSING_ROOT).lstrip("/")) if path.startswith(PROCESSING_ROOT) else path

            for item in job.processing_inputs:
                if item["InputName"] != "code":  # the code is this checkout's training_code, imported above
                    download_prefix(item["S3Input"]["S3Uri"], Path(local(item["S3Input"]["LocalPath"])))
            outputs = job.processing_output_config["Outputs"]
            for output in outputs:
                Path(local(output["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
            entrypoint = " ".join(job.app_specification["ContainerEntrypoint"])
            script = verify_prepare if "verify_prepare.py" in entrypoint else verify_report
            status = script.main([local(argument) for argument in job.app_specification["ContainerArguments"]])
            for output in outputs:
                upload_folder(Path(local(output["S3Output"]["LocalPath"])), output["S3Output"]["S3Uri"])
        job.processing_job_status = "Completed" if status == 0 else "Failed"
        if status != 0:
            job.failure_reason = f"AlgorithmError: {script.__name__}.py exited with status {status}"

    # --- Batch Transform: each batch file through inference.py, the reply as <batch>.out -----------------------------
    def _run_transform(self, job: Any) -> None:
        if self.scenario.transform_fails:
            job.transform_job_status, job.failure_reason = "Failed", self.scenario.transform_fails
            return
        if self._model is None:  # the container's environment is the request's Environment, as in SageMaker
            with patch.dict(os.environ, self.requests[job.transform_job_name].get("Environment", {})):
                self._model = inference.model_fn(str(self.scenario.model_dir))
        s3 = boto3.client("s3", region_name=REGION)
        source_bucket, source_prefix = _split(job.transform_input["DataSource"]["S3DataSource"]["S3Uri"])
        target_bucket, target_prefix = _split(job.transform_output["S3OutputPath"])
        listed = s3.list_objects_v2(Bucket=source_bucket, Prefix=source_prefix).get("Contents", [])
        for item in listed:
            body = s3.get_object(Bucket=source_bucket, Key=item["Key"])["Body"].read()
            data = inference.input_fn(body, job.transform_input["ContentType"])
            reply = inference.output_fn(inference.predict_fn(data, self._model), job.transform_output["Accept"])
            relative = item["Key"][len(source_prefix) :].lstrip("/")
            s3.put_object(Bucket=target_bucket, Key=f"{target_prefix.rstrip('/')}/{relative}.out", Body=reply)
        job.transform_job_status = "Completed"

    def loaded_views(self) -> list[str]:
        """What the emulated container served (inference.LoadedModel.views), once loaded."""
        return [self._model.views] if self._model is not None else []

    # --- endpoints and waits: the Verify bins state machine has none -------------------------------------------------
    def on_create_endpoint(self, name: str) -> None:
        raise AssertionError("Verify bins never creates an endpoint")

    def on_update_endpoint(self, name: str, config_name: str) -> None:
        raise AssertionError("Verify bins never updates an endpoint")

    def on_describe_endpoint(self, name: str) -> None:
        raise AssertionError("Verify bins never describes an endpoint")

    def waited(self, seconds: int) -> None:
        raise AssertionError("Verify bins has no Wait state")

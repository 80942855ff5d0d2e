"""make preflight (infra/preflight.py).

What is real and what is emulated:
- STS GetCallerIdentity and S3 ListObjectsV2 run against moto 5.2.5 (real boto3 clients, moto's backends: a
  missing bucket answers NoSuchBucket).
- Service Quotas: moto 5.2.5 implements only the VPC defaults, not SageMaker nor ListServiceQuotas; and moto's
  CloudFormation needs moto's [cloudformation] extra (11 more packages) even for DescribeStacks. Those calls go
  through botocore's Stubber, which checks every request and canned reply against botocore's own service
  models (operation names, parameters, response shapes). The quota names follow AWS's naming pattern
  ("<instance type> for spot training job usage"); values and codes are made up. The missing-stack error is
  CloudFormation's ValidationError "Stack with id CDKToolkit does not exist".
- Nothing here proves the real account's numbers: that is what running `make preflight` with credentials does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.config import config_from_mapping
from infra.preflight import main, quota_needs, run

REGION = "us-east-1"


@pytest.fixture
def cfg(default_context: dict):
    return config_from_mapping(default_context)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


class Session:
    """boto3 session whose service-quotas and cloudformation clients are stubbed; STS and S3 are boto3's (moto answers)."""

    def __init__(self, quotas: Any, cloudformation: Any) -> None:
        self.inner = boto3.Session(region_name=REGION)
        self.stubbed = {"service-quotas": quotas, "cloudformation": cloudformation}

    def get_credentials(self) -> Any:
        return self.inner.get_credentials()

    def client(self, name: str, **kwargs: Any) -> Any:
        return self.stubbed[name] if name in self.stubbed else self.inner.client(name, **kwargs)


def _quota(name: str, code: str, value: float) -> dict[str, Any]:
    return {"ServiceCode": "sagemaker", "QuotaCode": code, "QuotaName": name, "Value": value, "Adjustable": True}


def _stubbed_quotas(defaults: list[dict], applied: list[dict]) -> tuple[Any, Stubber]:
    client = boto3.client("service-quotas", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response("list_aws_default_service_quotas", {"Quotas": defaults}, {"ServiceCode": "sagemaker"})
    stubber.add_response("list_service_quotas", {"Quotas": applied}, {"ServiceCode": "sagemaker"})
    stubber.activate()
    return client, stubber


def _bootstrap(version: str | None = "21") -> Any:
    client = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(client)
    if version is None:
        stubber.add_client_error(
            "describe_stacks",
            "ValidationError",
            "Stack with id CDKToolkit does not exist",
            400,
            expected_params={"StackName": "CDKToolkit"},
        )
    else:
        stack = {
            "StackName": "CDKToolkit",
            "CreationTime": "2026-01-01T00:00:00Z",
            "StackStatus": "UPDATE_COMPLETE",
            "Outputs": [{"OutputKey": "BootstrapVersion", "OutputValue": version}],
        }
        stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "CDKToolkit"})
    stubber.activate()
    return client


def _dataset() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="aft-vbi-pds")
    s3.put_object(Bucket="aft-vbi-pds", Key="metadata/00001.json", Body=b"{}")


def test_needs_follow_the_configuration(cfg) -> None:
    needs = {n.quota_name: n.needed for n in quota_needs(cfg)}
    # cdk.json: spot, ml.g5.xlarge for tuning (2 parallel) and training (2 instances): one quota, peak 2.
    assert needs["ml.g5.xlarge for spot training job usage"] == 2
    assert needs["ml.m5.xlarge for processing job usage"] == 1
    assert needs["ml.m5.large for endpoint usage"] == 4
    on_demand = {n.quota_name for n in quota_needs(config_from_mapping({**_context(), "useSpot": False}))}
    assert "ml.g5.xlarge for training job usage" in on_demand
    serverless = {n.quota_name for n in quota_needs(config_from_mapping({**_context(), "endpointMode": "serverless"}))}
    assert not any("endpoint usage" in n for n in serverless)


def _context() -> dict:
    return json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]


def test_without_credentials_prints_the_list(cfg, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    status, text = run(cfg, REGION, boto3.Session(region_name=REGION))
    assert status == 0
    assert "nothing was checked" in text and "ml.g5.xlarge for spot training job usage: at least 2" in text
    assert "CDKToolkit" in text and "s3://aft-vbi-pds/" in text


@mock_aws
def test_everything_in_place(cfg, fake_credentials) -> None:
    _dataset()
    client, stubber = _stubbed_quotas(
        [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT", 0)],
        [
            _quota("ml.g5.xlarge for spot training job usage", "L-SPOT", 4),  # applied value beats the default
            _quota("ml.m5.xlarge for processing job usage", "L-PROC", 4),
            _quota("ml.m5.large for endpoint usage", "L-ENDP", 4),
        ],
    )
    status, text = run(cfg, REGION, Session(client, _bootstrap()))
    stubber.assert_no_pending_responses()
    assert status == 0, text
    assert "Nothing to request." in text and "account 123456789012" in text


@mock_aws
def test_missing_quota_bucket_and_bootstrap_are_reported_with_what_to_do(cfg, fake_credentials) -> None:
    client, _ = _stubbed_quotas(
        [_quota("ml.g5.xlarge for spot training job usage", "L-SPOT", 0), _quota("ml.m5.xlarge for processing job usage", "L-PROC", 4)],
        [],
    )
    status, text = run(cfg, REGION, Session(client, _bootstrap(None)))
    assert status == 1
    assert "REQUEST  ml.g5.xlarge for spot training job usage: need 2, have 0" in text
    assert "--quota-code L-SPOT --desired-value 2" in text
    assert "UNKNOWN  ml.m5.large for endpoint usage" in text  # not listed: told to check by hand
    assert "dataset s3://aft-vbi-pds/: cannot list it: NoSuchBucket" in text
    assert "no CDKToolkit stack in us-east-1" in text and "npx cdk bootstrap aws://123456789012/us-east-1" in text


@mock_aws
def test_old_bootstrap_and_unreadable_quotas(cfg, fake_credentials) -> None:
    _dataset()
    client = boto3.client("service-quotas", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("list_aws_default_service_quotas", "AccessDeniedException", "not allowed", 400)
    stubber.activate()
    status, text = run(cfg, REGION, Session(client, _bootstrap("4")))
    assert status == 1
    assert "UNKNOWN  ml.g5.xlarge for spot training job usage: cannot read SageMaker quotas" in text
    assert "CDKToolkit version 4 < 6" in text
    assert "OK       dataset s3://aft-vbi-pds/" in text


def test_bad_configuration_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cdk.json"
    bad.write_text(json.dumps({"context": {**_context(), "trainingInstanceCount": 0}}))
    assert main(["--context", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the configuration" in err and "trainingInstanceCount" in err and "Traceback" not in err
    (tmp_path / "broken.json").write_text("{")
    assert main(["--context", str(tmp_path / "broken.json")]) == 2

"""PipelineStack synthesized with StorageStack in a test app (cdk-nag applied): IAM, topic, logging, outputs,
and the rendered definition checked by asl-validator and the template by cfn-lint (real tools, no AWS)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.pipeline.images import resolve_images
from infra.pipeline.settings import check_name_lengths
from tests.pipeline.conftest import ROOT, Synth, synth_app

# Resources are selected by what they are (Match on their properties), never by their logical IDs.
SAGEMAKER = "sagemaker.amazonaws.com"
STATES = "states.amazonaws.com"


@pytest.fixture(scope="module")
def template(synth: Synth) -> Template:
    return Template.from_json(synth.template)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _only(found: dict[str, Any]) -> str:
    assert len(found) == 1, f"expected one match, found {sorted(found)}"
    return next(iter(found))


def _role_assumed_by(template: Template, service: str) -> str:
    """The logical ID of the one role the service assumes (for Step Functions: the training pipeline's)."""
    if service == STATES:
        return _machine(template, "-training-pipeline")["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    trust = {"Statement": Match.array_with([Match.object_like({"Principal": {"Service": service}})])}
    return _only(template.find_resources("AWS::IAM::Role", {"Properties": {"AssumeRolePolicyDocument": trust}}))


def _machine(template: Template, name_suffix: str) -> dict[str, Any]:
    """The one state machine whose name ends with name_suffix (-training-pipeline, -verify-bins)."""
    name = Match.string_like_regexp(f".*{name_suffix}$")
    found = template.find_resources("AWS::StepFunctions::StateMachine", {"Properties": {"StateMachineName": name}})
    return found[_only(found)]


def _statements(template: Template, service: str) -> dict[str, dict[str, Any]]:
    """The statements of the role `service` assumes, by Sid (CDK's own statements have none)."""
    role = {"Ref": _role_assumed_by(template, service)}
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": Match.array_with([role])}})
    policy = policies[_only(policies)]
    return {s.get("Sid", f"cdk-{i}"): s for i, s in enumerate(policy["Properties"]["PolicyDocument"]["Statement"])}


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_iam_actions_are_named_one_by_one(synth: Synth) -> None:
    for policy in _resources(synth.template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not [a for a in _actions(statement) if "*" in a], statement


def test_state_machine_role_has_exactly_the_calls_it_makes(synth: Synth, template: Template) -> None:
    statements = _statements(template, STATES)
    sagemaker = sorted(a for s in statements.values() for a in _actions(s) if a.startswith("sagemaker:"))
    assert sagemaker == sorted(
        [
            "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
            "sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob", "sagemaker:StopHyperParameterTuningJob",
            "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
            "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
            "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint",
            "sagemaker:UpdateEndpointWeightsAndCapacities",
            # .sync tags the jobs it starts; Step Functions reads tags back (tests/infra/test_iam_reference.py)
            "sagemaker:AddTags", "sagemaker:ListTags", "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
        ]
    )  # fmt: skip
    pass_role = statements["PassExecutionRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert _actions(pass_role) == ["iam:PassRole"] and pass_role["Resource"] == {
        "Fn::GetAtt": [_role_assumed_by(template, SAGEMAKER), "Arn"]
    }
    rules = json.dumps(statements["SyncRules"]["Resource"])
    for kind in ("Processing", "Tuning", "Training"):
        assert f"rule/StepFunctionsGetEventsForSageMaker{kind}JobsRule" in rules
    # Job ARNs are scoped to the name prefix (Stack.format_arn; CDK writes the partition literally for a known region).
    assert statements["TrainingJobs"]["Resource"] == f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{synth.config.name_prefix}-*"
    assert _actions(statements["Notify"]) == ["sns:Publish"]


def test_execution_role_pulls_only_the_dlc_repositories(synth: Synth, template: Template) -> None:
    statements = _statements(template, SAGEMAKER)
    images = resolve_images(synth.config)
    pull = json.dumps(statements["PullImages"]["Resource"])
    assert (
        f":{images.registry_account}:repository/pytorch-training" in pull
        and f":{images.registry_account}:repository/pytorch-inference" in pull
    )
    assert statements["EcrToken"]["Resource"] == "*" and _actions(statements["EcrToken"]) == ["ecr:GetAuthorizationToken"]
    assert statements["Metrics"]["Condition"]["StringLike"]["cloudwatch:namespace"]
    assert _actions(statements["CodeAsset"]) == ["s3:GetObject"]
    writable = json.dumps(statements["ArtifactsReadWrite"]["Resource"])
    assert all(f"/{prefix}/*" in writable for prefix in ("runs", "checkpoints", "datacapture"))


def test_topic_state_machine_and_alarm(synth: Synth, template: Template) -> None:
    topic_id = _only(template.find_resources("AWS::SNS::Topic", {"Properties": {"KmsMasterKeyId": Match.any_value()}}))
    template = synth.template
    topic = template["Resources"][topic_id]
    assert "KmsMasterKeyId" in topic["Properties"]
    (topic_policy,) = _resources(template, "AWS::SNS::TopicPolicy").values()
    assert any(
        s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in topic_policy["Properties"]["PolicyDocument"]["Statement"]
    )
    machines = _resources(template, "AWS::StepFunctions::StateMachine").values()
    assert sorted(m["Properties"]["StateMachineName"] for m in machines) == [
        f"{synth.config.name_prefix}-training-pipeline",
        f"{synth.config.name_prefix}-verify-bins",
    ]
    for machine in machines:
        assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
        assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    log_groups = _resources(template, "AWS::Logs::LogGroup").values()
    assert len(log_groups) == 2 and all("KmsKeyId" in g["Properties"] for g in log_groups)
    alarms = _resources(template, "AWS::CloudWatch::Alarm").values()
    failed = [a for a in alarms if "ExecutionsFailed" in json.dumps(a)]
    assert len(failed) == 1 and failed[0]["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    assert set(template["Outputs"]) >= {"StateMachineArn", "VerifyBinsStateMachineArn", "NotificationsTopicArn", "EndpointName"}
    assert template["Outputs"]["EndpointName"]["Value"] == synth.config.endpoint_name
    assert synth.pipeline.endpoint_name == synth.config.endpoint_name


def test_rendered_definition_passes_asl_validator(rendered_definition: str, tmp_path: Path) -> None:
    validator = ROOT / "node_modules" / ".bin" / "asl-validator"
    if not validator.exists():
        pytest.skip("node_modules/.bin/asl-validator is not installed (make setup)")
    path = tmp_path / "definition.json"
    path.write_text(rendered_definition)
    result = subprocess.run([str(validator), "--json-path", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_state_is_named_and_every_task_catches(rendered_definition: str) -> None:
    states = json.loads(rendered_definition)["States"]
    for name, state in states.items():
        if state["Type"] == "Task" and name != "Notify failure":
            assert any(c["ErrorEquals"] == ["States.ALL"] for c in state.get("Catch", [])), f"{name} does not catch every error"


def test_cfn_lint_is_clean(synth: Synth, tmp_path: Path) -> None:
    cfn_lint = shutil.which("cfn-lint", path=str(ROOT / ".venv" / "bin"))
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (make setup)")
    path = tmp_path / "pipeline.template.json"
    path.write_text(json.dumps(synth.template))
    result = subprocess.run([cfn_lint, "--ignore-checks", "W3005", "--", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_long_prefix_that_breaks_a_name_limit_is_refused() -> None:
    check_name_lengths("abcdefghijkl")  # the longest prefix config allows fits
    with pytest.raises(ValueError, match="tuning job names 33 characters long; SageMaker allows 32"):
        check_name_lengths("a" * 19)


@pytest.mark.slow
def test_serverless_endpoint_cpu_training_and_email(tmp_path: Path) -> None:
    """A second synth with other settings: serverless endpoint, CPU training, an e-mail subscriber."""
    from tests.pipeline.render import render_definition

    synth = synth_app(
        {
            "endpointMode": "serverless",
            "trainingInstanceType": "ml.m5.2xlarge",
            "trainingInstanceCount": 1,
            "alarmEmail": "ops@example.com",
            "useSpot": False,
        },
        nag=False,
    )
    (subscription,) = _resources(synth.template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email" and subscription["Properties"]["Endpoint"] == "ops@example.com"
    states = json.loads(render_definition(synth.template, synth.storage_template))["States"]
    assert "Register autoscaling target" not in states
    config = states["Create endpoint config"]["Parameters"]
    assert "DataCaptureConfig" not in config and config["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 3072
    assert "DeploymentConfig" not in states["Update endpoint"]["Parameters"]
    training = states["Train"]["Parameters"]
    assert training["EnableManagedSpotTraining"] is False and "CheckpointConfig" not in training
    assert "MaxWaitTimeInSeconds" not in training["StoppingCondition"]
    assert training["AlgorithmSpecification"]["TrainingImage"].endswith("-cpu-py312")
    assert states["Apply defaults"]["Parameters"]["fixed"]["sagemakerHp"]["sagemaker_torch_distributed_enabled"] == "false"


def test_code_asset_is_the_deterministic_tarball_and_reaches_the_jobs(synth: Synth, rendered_definition: str) -> None:
    code = synth.pipeline.node.find_child("TrainingCode")
    asset = code.asset
    staged = Path(synth.app.synth().directory) / asset.asset_path
    # What CDK uploads is the tarball we built at synth, byte for byte (test_code_asset.py shows it is deterministic).
    assert staged.read_bytes() == code.tarball.read_bytes()
    assert (
        hashlib.sha256(code.tarball.read_bytes())
        .hexdigest()
        .startswith(code.tarball.name.removeprefix("sourcedir-").removesuffix(".tar.gz"))
    )
    url = f"s3://cdk-hnb659fds-assets-123456789012-us-east-1/{asset.asset_hash}.gz"
    states = json.loads(rendered_definition)["States"]
    assert states["Apply defaults"]["Parameters"]["fixed"]["sagemakerHp"]["sagemaker_submit_directory"] == url
    assert states["Prepare"]["Parameters"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] == url
    assert states["Evaluate"]["Parameters"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] == url

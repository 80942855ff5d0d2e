"""The pipeline's IAM checked against references the project did not write, on concrete ARNs.

moto runs the state machine but enforces no IAM. Here, for every Task state of the rendered definition:
- the state machine role must allow what CDK's own `aws_stepfunctions_tasks` class for that integration
  grants (synthesized in a scratch stack with the run's concrete names), or, for the integrations CDK has
  no class for (Processing and tuning jobs), what the Step Functions developer guide lists;
- the SageMaker execution role must allow what each job needs to read its inputs and write its outputs,
  derived from the Task's own Parameters (S3 URIs, KMS key ids, images, hyperparameters), not from a list.
Every request is evaluated on a concrete ARN of this run (job names and paths from the definition's own
"name" states with a fixed run id) by tests/infra/policy_eval.py (moto's IAM engine + IAM conditions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.infra.policy_eval import PolicyEvaluator, Resolver, role_policy_documents
from tests.nag_findings import nag_findings
from tests.pipeline.render import ACCOUNT, REGION, RenderValues, render_definition

RUN_ID = "0a1b2c3d"
DYNAMIC = "<dynamic>"
SAGEMAKER = "sagemaker.amazonaws.com"


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    why: str = ""


@dataclass
class Built:
    config: str
    template: dict[str, Any]
    storage_template: dict[str, Any]
    states: dict[str, dict[str, Any]]
    resolver: Resolver
    doc: dict[str, Any]
    state_machine_role: PolicyEvaluator
    execution_role: PolicyEvaluator
    execution_role_arn: str = ""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    stack: Any = None  # the synthesized PipelineStack (cdk-nag applied to the non-default configs)


# --- the definition, made concrete ---------------------------------------------------------------------


def _all_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        found[name] = state
        for branch in state.get("Branches", []):
            found.update(_all_states(branch["States"]))
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                found.update(_all_states(state[key]["States"]))
    return found


def _pass_with(states: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """The Parameters of the one Pass state whose Parameters hold `key` (found by content, not by name)."""
    hits = [s["Parameters"] for s in states.values() if s["Type"] == "Pass" and key in s.get("Parameters", {})]
    assert len(hits) == 1, f"expected one Pass state with parameter {key}, found {len(hits)}"
    return hits[0]


def _format_run(expr: str) -> str:
    """States.Format('...{}...', $.run.id) (the training pipeline) or $.verify.id (Verify bins) with this run's id."""
    match = re.fullmatch(r"States\.Format\('(.*)', \$\.(?:run|verify)\.id\)", expr)
    return match.group(1).replace("{}", RUN_ID) if match else DYNAMIC


def _lookup(path: str, doc: dict[str, Any]) -> Any:
    value: Any = doc
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, dict) or part not in value:
            return DYNAMIC
        value = value[part]
    return value


def concrete(params: Any, doc: dict[str, Any]) -> Any:
    """A Task's Parameters with every `.$` path replaced by this run's value (DYNAMIC where unknown)."""
    if isinstance(params, list):
        return [concrete(p, doc) for p in params]
    if not isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key.endswith(".$"):
            out[key[:-2]] = _lookup(value, doc) if value.startswith("$.") else _format_run(value)
        else:
            out[key] = concrete(value, doc)
    return out


def _weights_inputs(states: dict[str, dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """$.inputs as the pretrained-weights states write it for doc's settings.pretrained (an S3 URI: the channel branch)."""
    from_s3 = str(doc["settings"]["pretrained"]).startswith("s3://")
    (branch,) = [
        s["Parameters"]
        for s in states.values()
        if s["Type"] == "Pass"
        and "channels" in s.get("Parameters", {})
        and any(c["ChannelName"] == "pretrained" for c in s["Parameters"]["channels"]) == from_s3
    ]
    made = concrete(branch, doc)
    fixed = doc["fixed"]
    # "Build trial hyperparameters": JsonMerge(JsonMerge(staticHp, hyperparameters), trialSagemakerHp)
    return {**made, "trialStaticHp": {**fixed["staticHp"], **made["hyperparameters"], **fixed["trialSagemakerHp"]}}


def with_pretrained(states: dict[str, dict[str, Any]], doc: dict[str, Any], pretrained: str) -> dict[str, Any]:
    """The state document of a run whose settings.pretrained is `pretrained` (execution input or cdk.json)."""
    doc = {**doc, "settings": {**doc["settings"], "pretrained": pretrained}}
    inputs = _weights_inputs(states, doc)
    fixed = doc["fixed"]
    # "Merge hyperparameters" with nothing tuned: static < the weights' choice < sagemaker_*
    return {**doc, "inputs": inputs, "trainHp": {"values": {**fixed["staticHp"], **inputs["hyperparameters"], **fixed["sagemakerHp"]}}}


def state_document(states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = {k[:-2]: _format_run(v) for k, v in _pass_with(states, "training.$").items()}
    paths = {k[:-2]: _format_run(v) for k, v in _pass_with(states, "trainOutput.$").items()}
    defaults = _pass_with(states, "defaults")
    fixed = defaults["fixed"]
    doc = {
        "run": {"id": RUN_ID},
        "names": names,
        "paths": paths,
        "settings": defaults["defaults"],
        "fixed": fixed,
        # SageMaker writes the model to <S3OutputPath><job name>/output/model.tar.gz (CreateTrainingJob docs).
        "training": {"job": names["training"], "modelArtifacts": f"{paths['trainOutput']}{names['training']}/output/model.tar.gz"},
    }
    return with_pretrained(states, doc, doc["settings"]["pretrained"])


# cdk.json's defaults, and a second shape of Parameters: serverless endpoint (no KmsKeyId, no data capture, no
# blue/green), on-demand CPU training (no checkpoints, one instance), weights from an S3 prefix of another bucket
# (the `pretrained` channel in every trial and in Train).
CONFIGURED_WEIGHTS = "s3://team-weights-bucket/imagenet/resnet18/"
CONFIGS = {
    "defaults": {},
    "serverless-cpu-on-demand-s3-weights": {
        "pretrainedWeights": CONFIGURED_WEIGHTS,
        "endpointMode": "serverless",
        "useSpot": False,
        "trainingInstanceType": "ml.m5.2xlarge",
        "trainingInstanceCount": 1,
        "tuningInstanceType": "ml.m5.2xlarge",
    },
}


def built_from(
    config: str,
    synth: Any,
    *,
    machine: str,
    state_machine_role: str,
    document: Callable[[dict[str, dict[str, Any]], RenderValues], dict[str, Any]],
) -> Built:
    """One state machine of a synthesized app, rendered, with its role's and the execution role's policies."""
    values = RenderValues()
    states = _all_states(json.loads(render_definition(synth.template, synth.storage_template, values, machine=machine))["States"])
    resolver = Resolver({"pipeline": synth.template, "storage": synth.storage_template}, values)
    roles = [k for k, v in synth.template["Resources"].items() if v["Type"] == "AWS::IAM::Role"]
    exec_role = next(k for k in roles if k.startswith("SageMakerExecutionRole"))
    return Built(
        config,
        synth.template,
        synth.storage_template,
        states,
        resolver,
        document(states, values),
        PolicyEvaluator.from_documents(role_policy_documents(synth.template, state_machine_role, resolver)),
        PolicyEvaluator.from_documents(role_policy_documents(synth.template, "SageMakerExecutionRole", resolver)),
        values.role_arn(exec_role),
        {name: s for name, s in states.items() if s["Type"] == "Task"},
        synth.pipeline,
    )


@pytest.fixture(scope="module", params=list(CONFIGS))
def built(request: pytest.FixtureRequest) -> Built:
    from tests.pipeline.conftest import synth_app

    # The default config's nag findings are test_app.py's; here the other shapes' (e.g. the configured weights prefix).
    synth = synth_app(CONFIGS[request.param], nag=request.param != "defaults")
    return built_from(
        request.param,
        synth,
        machine="TrainingPipeline",
        state_machine_role="StateMachineRole",
        document=lambda states, _values: state_document(states),
    )


# --- ARNs ------------------------------------------------------------------------------------------------


def sm_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def s3_parts(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    assert parsed.scheme == "s3", uri
    return parsed.netloc, parsed.path.lstrip("/")


def bucket_key_arn(built: Built, bucket: str) -> str | None:
    """The KMS key a bucket of the storage stack encrypts with by default (None: not SSE-KMS or not ours)."""
    values = built.resolver.values
    for logical_id, resource in built.storage_template["Resources"].items():
        if resource["Type"] == "AWS::S3::Bucket" and built.resolver.ref(logical_id) == bucket:
            rules = resource["Properties"].get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
            for rule in rules:
                default = rule.get("ServerSideEncryptionByDefault", {})
                if default.get("SSEAlgorithm") == "aws:kms":
                    return built.resolver.resolve(default["KMSMasterKeyID"])
    assert bucket not in (values.artifacts_bucket, values.data_bucket), f"bucket {bucket} not found in the storage template"
    return None


# --- references for the state machine role -----------------------------------------------------------------

# Step Functions developer guide, "IAM policies for Amazon SageMaker" (Run a Job (.sync), dynamic resources),
# https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html : CDK has no task class for these two.
# AddTags: .sync tags the job it starts (MANAGED_BY_AWS=STARTED_BY_STEP_FUNCTIONS); aws-cdk#27264 added it to
# CDK's transform-job task for that reason, and CDK's training-job task grants it (checked below).
DOCS_SYNC_POLICIES: dict[str, list[dict[str, Any]]] = {
    "sagemaker:createProcessingJob.sync": [
        {
            "Action": ["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"],
            "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/*",
        },
        {"Action": ["sagemaker:ListTags", "sagemaker:AddTags"], "Resource": "*"},
        {"Action": ["iam:PassRole"], "Resource": "[[roleArn]]", "Condition": {"StringEquals": {"iam:PassedToService": SAGEMAKER}}},
        {
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForSageMakerProcessingJobsRule",
        },
    ],
    "sagemaker:createHyperParameterTuningJob.sync": [
        {
            "Action": [
                "sagemaker:CreateHyperParameterTuningJob",
                "sagemaker:DescribeHyperParameterTuningJob",
                "sagemaker:StopHyperParameterTuningJob",
                "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
            ],
            "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/*",
        },
        {"Action": ["sagemaker:ListTags", "sagemaker:AddTags"], "Resource": "*"},
        {"Action": ["iam:PassRole"], "Resource": "[[roleArn]]", "Condition": {"StringEquals": {"iam:PassedToService": SAGEMAKER}}},
        {
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForSageMakerTuningJobsRule",
        },
    ],
}


def _integration(resource: str) -> str:
    return resource.split(":::", 1)[1]


def _cdk_task(scope: Any, construct_id: str, integration: str, params: dict[str, Any], built: Built) -> Any:
    """CDK's own task class for this integration, built with the run's concrete values (None: no class)."""
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_sns as sns
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks

    role = iam.Role.from_role_arn(scope, f"{construct_id}Role", built.execution_role_arn, mutable=False)
    image = tasks.DockerImage.from_registry("placeholder")
    if integration == "sagemaker:createTrainingJob.sync":
        return tasks.SageMakerCreateTrainingJob(
            scope,
            construct_id,
            training_job_name=params["TrainingJobName"],
            role=role,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            algorithm_specification=tasks.AlgorithmSpecification(training_image=image),
            input_data_config=[
                tasks.Channel(
                    channel_name="train",
                    data_source=tasks.DataSource(
                        s3_data_source=tasks.S3DataSource(s3_location=tasks.S3Location.from_json_expression("$.p"))
                    ),
                )
            ],
            output_data_config=tasks.OutputDataConfig(s3_output_location=tasks.S3Location.from_json_expression("$.o")),
        )
    if integration == "sagemaker:createTransformJob.sync":
        from aws_cdk import aws_ec2 as ec2

        return tasks.SageMakerCreateTransformJob(
            scope,
            construct_id,
            transform_job_name=params["TransformJobName"],
            model_name=params["ModelName"],
            role=role,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(
                    s3_data_source=tasks.TransformS3DataSource(s3_uri=params["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
                )
            ),
            transform_output=tasks.TransformOutput(s3_output_path=params["TransformOutput"]["S3OutputPath"]),
            transform_resources=tasks.TransformResources(instance_count=1, instance_type=ec2.InstanceType("m5.xlarge")),
        )
    if integration == "sagemaker:createModel":
        return tasks.SageMakerCreateModel(
            scope, construct_id, model_name=params["ModelName"], role=role, primary_container=tasks.ContainerDefinition(image=image)
        )
    if integration == "sagemaker:createEndpointConfig":
        from aws_cdk import aws_ec2 as ec2

        key = kms.Key.from_key_arn(scope, f"{construct_id}Key", params["KmsKeyId"]) if "KmsKeyId" in params else None
        return tasks.SageMakerCreateEndpointConfig(
            scope,
            construct_id,
            endpoint_config_name=params["EndpointConfigName"],
            kms_key=key,
            production_variants=[
                tasks.ProductionVariant(model_name="m", variant_name="AllTraffic", instance_type=ec2.InstanceType("m5.large"))
            ],
        )
    if integration == "sagemaker:createEndpoint":
        return tasks.SageMakerCreateEndpoint(
            scope, construct_id, endpoint_name=params["EndpointName"], endpoint_config_name=params["EndpointConfigName"]
        )
    if integration == "sagemaker:updateEndpoint":
        return tasks.SageMakerUpdateEndpoint(
            scope, construct_id, endpoint_name=params["EndpointName"], endpoint_config_name=params["EndpointConfigName"]
        )
    if integration == "sns:publish":
        topic = sns.Topic.from_topic_arn(scope, f"{construct_id}Topic", params["TopicArn"])
        return tasks.SnsPublish(scope, construct_id, topic=topic, message=sfn.TaskInput.from_text("m"))
    if integration.startswith("aws-sdk:"):
        _, service, action = integration.split(":")
        iam_prefix = {"applicationautoscaling": "application-autoscaling"}.get(service, service)
        return tasks.CallAwsService(
            scope,
            construct_id,
            service=service,
            action=action,
            iam_action=f"{iam_prefix}:{action[0].upper()}{action[1:]}",
            parameters={},
            iam_resources=[_sdk_resource(service, action, params)],
        )
    return None


def _sdk_resource(service: str, action: str, params: dict[str, Any]) -> str:
    """The ARN an aws-sdk call acts on, from its Parameters (the resource types of the Service Authorization Reference)."""
    if service == "s3" and action in ("getObject", "putObject"):
        return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
    if service == "sagemaker" and action.startswith(("describe", "list", "stop")):
        (arn,) = _main_arns(params)  # the one job, model, config or endpoint the call names
        return arn
    if service == "applicationautoscaling":
        return "*"  # scalable targets and policies: no ARN before they exist
    raise AssertionError(f"no resource rule for aws-sdk:{service}:{action}: add one")


def _main_arns(params: dict[str, Any]) -> list[str]:
    kinds = {
        "ProcessingJobName": "processing-job",
        "HyperParameterTuningJobName": "hyper-parameter-tuning-job",
        "TrainingJobName": "training-job",
        "TransformJobName": "transform-job",
        "ModelName": "model",
        "EndpointConfigName": "endpoint-config",
        "EndpointName": "endpoint",
    }
    return [sm_arn(kind, params[key]) for key, kind in kinds.items() if isinstance(params.get(key), str)]


def requests_from_policy(statements: list[dict[str, Any]], params: dict[str, Any], exec_role_arn: str, why: str) -> list[Request]:
    """Each reference statement as concrete requests: wildcards replaced by this run's ARNs, conditions as request context."""
    candidates = _main_arns(params)
    # Request context the call itself carries (Service Authorization Reference condition keys).
    carried = (("application-autoscaling:service-namespace", params["ServiceNamespace"]),) if "ServiceNamespace" in params else ()
    out = []
    for statement in statements:
        context = carried + tuple(
            (key, value)
            for operator, keys in statement.get("Condition", {}).items()
            if operator == "StringEquals"
            for key, value in keys.items()
        )
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for resource in resources:
            resource = exec_role_arn if resource == "[[roleArn]]" else resource
            if resource == "*":
                service_arns = [a for a in candidates if a.startswith("arn:aws:sagemaker:")]
                # "*" in a reference: the call acts on the resources it names (ListTags on each of them).
                concrete_arns = service_arns if actions[0].startswith("sagemaker:") and service_arns else ["*"]
            elif "*" in resource:
                pattern = re.escape(resource).replace(r"\*", ".*")
                concrete_arns = [c for c in candidates if re.fullmatch(pattern, c)]
                assert concrete_arns, f"{why}: reference resource {resource} matches none of this run's ARNs {candidates}"
            else:
                concrete_arns = [resource]
            out += [Request(a, arn, context, why) for a in actions for arn in concrete_arns]
    return out


def state_machine_references(built: Built) -> dict[str, list[Request]]:
    import aws_cdk as cdk
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk.assertions import Template

    app = cdk.App()
    stack = cdk.Stack(app, "reference", env=cdk.Environment(account=ACCOUNT, region=REGION))
    machines: dict[str, Any] = {}
    references: dict[str, list[Request]] = {}
    for index, (name, state) in enumerate(sorted(built.tasks.items())):
        integration = _integration(state["Resource"])
        params = concrete(state["Parameters"], built.doc)
        task = _cdk_task(stack, f"Task{index}", integration, params, built)
        if task is not None:
            machines[name] = (sfn.StateMachine(stack, f"Machine{index}", definition_body=sfn.DefinitionBody.from_chainable(task)), params)
        elif integration in DOCS_SYNC_POLICIES:
            references[name] = requests_from_policy(
                DOCS_SYNC_POLICIES[integration], params, built.execution_role_arn, f"{name} ({integration}, Step Functions docs)"
            )
        else:
            raise AssertionError(f"Task {name!r} uses {integration}: no CDK task class or documented policy in this test; add one")
    template = Template.from_stack(stack).to_json()
    resolver = Resolver({"reference": template})
    for name, (machine, params) in machines.items():
        role_id = stack.get_logical_id(machine.role.node.default_child)
        documents = role_policy_documents(template, role_id, resolver)
        statements = [s for d in documents for s in d["Statement"]]
        integration = _integration(built.tasks[name]["Resource"])
        references[name] = requests_from_policy(statements, params, built.execution_role_arn, f"{name} ({integration}, CDK task class)")
    return references


def derived_caller_needs(built: Built) -> dict[str, list[Request]]:
    """What the Parameters (and the resources they name) imply for the caller beyond the API action itself."""
    needs: dict[str, list[Request]] = {}
    topics = {
        built.resolver.ref(k): built.resolver.resolve(v["Properties"].get("KmsMasterKeyId"))
        for k, v in built.template["Resources"].items()
        if v["Type"] == "AWS::SNS::Topic"
    }
    for name, state in built.tasks.items():
        integration = _integration(state["Resource"])
        params = concrete(state["Parameters"], built.doc)
        out: list[Request] = []
        if integration in ("aws-sdk:s3:getObject", "aws-sdk:s3:putObject"):
            key = bucket_key_arn(built, params["Bucket"])
            if key:
                # S3 user guide, "Using server-side encryption with AWS KMS keys": GET needs kms:Decrypt, PUT kms:GenerateDataKey.
                action = "kms:Decrypt" if integration.endswith("getObject") else "kms:GenerateDataKey"
                out.append(Request(action, key, why=f"{name}: the bucket is SSE-KMS"))
            catches_absent = any("S3.NoSuchKeyException" in c["ErrorEquals"] for c in state.get("Catch", []))
            if integration.endswith("getObject") and catches_absent:
                # The state catches NoSuchKey: without s3:ListBucket, S3 answers 403 AccessDenied instead (S3 GetObject docs).
                out.append(
                    Request("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", (("s3:prefix", params["Key"]),), f"{name}: 404 not 403")
                )
        if integration == "sns:publish" and topics.get(params["TopicArn"]):
            # SNS developer guide, "Encryption at rest": publishers to an encrypted topic need GenerateDataKey* and Decrypt.
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                out.append(Request(action, topics[params["TopicArn"]], why=f"{name}: the topic is SSE-KMS"))
        if integration == "sagemaker:createEndpointConfig" and "KmsKeyId" in params:
            # API reference, CreateEndpointConfig.KmsKeyId: the key is granted to the endpoint's instances by the caller.
            for action in ("kms:CreateGrant", "kms:DescribeKey"):
                out.append(Request(action, params["KmsKeyId"], why=f"{name}: KmsKeyId"))
        if integration == "sagemaker:updateEndpoint":
            alarms = params.get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {}).get("Alarms", [])
            for alarm in alarms:
                # SageMaker developer guide, "Auto-Rollback Configuration and Monitoring": DescribeAlarms on each alarm.
                arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm['AlarmName']}"
                out.append(Request("cloudwatch:DescribeAlarms", arn, why=f"{name}: auto-rollback alarm"))
        if out:
            needs[name] = out
    return needs


# --- what each SageMaker job needs from the execution role ---------------------------------------------------


def _ecr(image: str, why: str) -> list[Request]:
    match = re.fullmatch(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)[:@].+", image)
    assert match, f"{why}: not an ECR image URI: {image}"
    account, region, repository = match.groups()
    repo = f"arn:aws:ecr:{region}:{account}:repository/{repository}"
    return [
        Request("ecr:BatchGetImage", repo, why=why),
        Request("ecr:GetDownloadUrlForLayer", repo, why=why),
        Request("ecr:GetAuthorizationToken", "*", why=why),
    ]


def _s3_read(built: Built, uri: str, why: str, *, prefix: bool = True) -> list[Request]:
    bucket, key = s3_parts(uri)
    obj = key + "part-00000" if key.endswith("/") or not key else key
    out = [Request("s3:GetObject", f"arn:aws:s3:::{bucket}/{obj}", why=why)]
    if prefix:  # S3DataType S3Prefix: SageMaker lists the prefix (ListObjectsV2), then reads each object
        out.append(Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", (("s3:prefix", key),), why))
    kms_key = bucket_key_arn(built, bucket)
    if kms_key:
        out.append(Request("kms:Decrypt", kms_key, why=f"{why} (SSE-KMS bucket)"))
    return out


def _s3_write(built: Built, uri: str, obj_suffix: str, why: str, kms_key: str | None, *, encrypt: bool = False) -> list[Request]:
    bucket, key = s3_parts(uri)
    out = [Request("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}{obj_suffix}", why=why)]
    key_arn = kms_key or bucket_key_arn(built, bucket)
    if key_arn:
        out.append(Request("kms:GenerateDataKey", key_arn, why=f"{why} (SSE-KMS)"))
    if kms_key and encrypt:
        # API reference, OutputDataConfig.KmsKeyId: "the SageMaker execution role must include permissions to call kms:Encrypt".
        out.append(Request("kms:Encrypt", kms_key, why=f"{why} (KmsKeyId)"))
    return out


def _logs_and_metrics(group: str, stream: str, namespace: str, why: str) -> list[Request]:
    group_arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    stream_arn = f"{group_arn}:log-stream:{stream}"
    return [
        Request("logs:CreateLogGroup", group_arn, why=why),
        Request("logs:CreateLogStream", stream_arn, why=why),
        Request("logs:PutLogEvents", stream_arn, why=why),
        Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", namespace),), why),
    ]


def _training_definition_needs(built: Built, definition: dict[str, Any], job_name: str, why: str) -> list[Request]:
    out = _ecr(definition["AlgorithmSpecification"]["TrainingImage"], why)
    for channel in definition["InputDataConfig"]:
        out += _s3_read(built, channel["DataSource"]["S3DataSource"]["S3Uri"], f"{why}: channel {channel['ChannelName']}")
    hp = definition.get("HyperParameters") or definition.get("StaticHyperParameters") or {}
    assert hp != DYNAMIC, f"{why}: hyperparameters not resolved"
    if "sagemaker_submit_directory" in hp:
        out += _s3_read(built, hp["sagemaker_submit_directory"], f"{why}: sagemaker_submit_directory", prefix=False)
    output = definition["OutputDataConfig"]
    out += _s3_write(
        built, output["S3OutputPath"], f"{job_name}/output/model.tar.gz", f"{why}: model output", output.get("KmsKeyId"), encrypt=True
    )
    if "CheckpointConfig" in definition:
        uri = definition["CheckpointConfig"]["S3Uri"]
        out += _s3_write(built, uri, "checkpoint.pt", f"{why}: checkpoints", None) + _s3_read(built, uri, f"{why}: spot resume")
    if "ProfilerConfig" in definition:
        out += _s3_write(
            built, definition["ProfilerConfig"]["S3OutputPath"], f"{job_name}/profiler-output/x.json", f"{why}: profiler", None
        )
    volume_key = definition.get("ResourceConfig", {}).get("VolumeKmsKeyId")
    if volume_key:
        out.append(Request("kms:CreateGrant", volume_key, why=f"{why}: VolumeKmsKeyId"))
    return out + _logs_and_metrics("/aws/sagemaker/TrainingJobs", f"{job_name}/algo-1-1700000000", "/aws/sagemaker/TrainingJobs", why)


def execution_role_needs(built: Built) -> dict[str, list[Request]]:
    needs: dict[str, list[Request]] = {}
    endpoint_names = [
        concrete(s["Parameters"], built.doc)["EndpointName"] for s in built.tasks.values() if s["Resource"].endswith("createEndpoint")
    ]
    for name, state in built.tasks.items():
        integration = _integration(state["Resource"])
        p = concrete(state["Parameters"], built.doc)
        why = name
        out: list[Request] = []
        if integration.startswith("sagemaker:") and ("RoleArn" in p or "ExecutionRoleArn" in p):
            role = p.get("RoleArn") or p.get("ExecutionRoleArn")
            assert role == built.execution_role_arn, f"{name} runs as {role}, not the execution role"
        if integration == "sagemaker:createProcessingJob.sync":
            out += _ecr(p["AppSpecification"]["ImageUri"], why)
            for item in p["ProcessingInputs"]:
                out += _s3_read(built, item["S3Input"]["S3Uri"], f"{why}: input {item['InputName']}")
            config = p["ProcessingOutputConfig"]
            for item in config["Outputs"]:
                out += _s3_write(
                    built, item["S3Output"]["S3Uri"], "result.json", f"{why}: output {item['OutputName']}", config.get("KmsKeyId")
                )
            volume_key = p["ProcessingResources"]["ClusterConfig"].get("VolumeKmsKeyId")
            if volume_key:
                out.append(Request("kms:CreateGrant", volume_key, why=f"{why}: VolumeKmsKeyId"))
            job = p["ProcessingJobName"]
            out += _logs_and_metrics("/aws/sagemaker/ProcessingJobs", f"{job}/algo-1-1700000000", "/aws/sagemaker/ProcessingJobs", why)
            # Prepare reads the dataset source its arguments name (the execution input's dataSource, default from config).
            if "prep.py" in json.dumps(state["Parameters"]) and isinstance(built.doc["settings"].get("dataSource"), str):
                out += _s3_read(built, built.doc["settings"]["dataSource"] + "metadata/", f"{why}: dataSource")
                out += _s3_read(built, built.doc["settings"]["dataSource"] + "bin-images/", f"{why}: dataSource")
        elif integration == "sagemaker:createTrainingJob.sync":
            out += _training_definition_needs(built, p, p["TrainingJobName"], why)
        elif integration == "sagemaker:createHyperParameterTuningJob.sync":
            trial = f"{p['HyperParameterTuningJobName']}-001-1a2b3c4d"  # SageMaker names trials <tuning job>-NNN-<hash>
            out += _training_definition_needs(built, p["TrainingJobDefinition"], trial, f"{why} (trial)")
        elif integration == "sagemaker:createModel":
            container = p["PrimaryContainer"]
            out += _ecr(container["Image"], why)
            out += _s3_read(built, container["ModelDataUrl"], f"{why}: ModelDataUrl", prefix=False)
            for endpoint in endpoint_names:
                group = f"/aws/sagemaker/Endpoints/{endpoint}"
                out += _logs_and_metrics(group, "AllTraffic/i-0123456789abcdef0", "/aws/sagemaker/Endpoints", why)
        elif integration == "sagemaker:createEndpointConfig":
            capture = p.get("DataCaptureConfig")
            if capture:
                out += _s3_write(
                    built,
                    capture["DestinationS3Uri"],
                    "/AllTraffic/2026/11/26/00/capture.jsonl",
                    f"{why}: data capture",
                    capture.get("KmsKeyId"),
                )
        elif integration == "sagemaker:updateEndpoint":
            for alarm in p.get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {}).get("Alarms", []):
                arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm['AlarmName']}"
                out.append(Request("cloudwatch:DescribeAlarms", arn, why=f"{why}: deployment guardrails (execution role)"))
        if out:
            needs[name] = out
    return needs


def _denied(evaluator: PolicyEvaluator, requests: dict[str, list[Request]]) -> list[str]:
    failures = []
    for state, reqs in sorted(requests.items()):
        for r in reqs:
            if DYNAMIC in r.resource:
                failures.append(f"{state}: {r.action} on an unresolved resource ({r.why})")
            elif not evaluator.allows(r.action, r.resource, dict(r.context)):
                failures.append(f"{state}: {r.action} on {r.resource} {dict(r.context) or ''} denied  [{r.why}]")
    return failures


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def references(built: Built) -> dict[str, list[Request]]:
    return state_machine_references(built)


def test_every_task_has_a_reference(built: Built, references: dict[str, list[Request]]) -> None:
    integrations = {_integration(s["Resource"]) for s in built.tasks.values()}
    assert {"sagemaker:createProcessingJob.sync", "sagemaker:createTrainingJob.sync", "sns:publish"} <= integrations
    assert set(references) == set(built.tasks), set(built.tasks) - set(references)
    assert all(references.values())


def test_state_machine_role_allows_what_cdk_and_the_docs_grant(built: Built, references: dict[str, list[Request]]) -> None:
    failures = _denied(built.state_machine_role, references)
    assert not failures, "state machine role misses:\n" + "\n".join(failures)


def test_state_machine_role_allows_what_the_parameters_imply(built: Built) -> None:
    needs = derived_caller_needs(built)
    assert needs, "no derived needs: the definition changed shape"
    assert any(n.action == "kms:Decrypt" for reqs in needs.values() for n in reqs)
    failures = _denied(built.state_machine_role, needs)
    assert not failures, "state machine role misses:\n" + "\n".join(failures)


def test_execution_role_allows_what_each_job_reads_and_writes(built: Built) -> None:
    needs = execution_role_needs(built)
    jobs = [n for n, s in built.tasks.items() if ".sync" in s["Resource"]]
    assert set(jobs) <= set(needs), f"jobs without derived needs: {set(jobs) - set(needs)}"
    failures = _denied(built.execution_role, needs)
    assert not failures, "execution role misses:\n" + "\n".join(failures)


def test_execution_role_lets_prepare_upload_shards_as_they_finish(built: Built) -> None:
    """With shards, prep.py --upload-to sends each finished ~151 MB shard to the run's prepare/ prefix itself (boto3's
    managed transfer: a multipart upload). S3 User Guide, multipart upload permissions: the parts are authorized as
    s3:PutObject, s3:AbortMultipartUpload cleans up a failed one, and with SSE-KMS the requester needs
    kms:GenerateDataKey and kms:Decrypt on the key. The arguments come from the data-format Pass states."""
    arguments = [s["Parameters"]["prepareArguments.$"] for s in built.states.values() if "prepareArguments.$" in s.get("Parameters", {})]
    sharded = [a for a in arguments if "'shards'" in a]
    assert sharded and all("'--upload-to', $.paths.prepared" in a for a in sharded)
    bucket, key = s3_parts(built.doc["paths"]["prepared"])
    shard = f"arn:aws:s3:::{bucket}/{key}train/shard-0002-of-0004-00017.tar"
    for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
        assert built.execution_role.allows(action, shard), action
    key_arn = bucket_key_arn(built, bucket)
    assert key_arn, "the artifacts bucket is SSE-KMS"
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert built.execution_role.allows(action, key_arn), action


def test_pass_role_is_limited_to_sagemaker(built: Built) -> None:
    role = built.execution_role_arn
    assert built.state_machine_role.allows("iam:PassRole", role, {"iam:PassedToService": SAGEMAKER})
    assert not built.state_machine_role.allows("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not built.state_machine_role.allows("iam:PassRole", role)


def test_roles_stay_scoped_to_this_pipeline(built: Built) -> None:
    """The references are met with this prefix's ARNs only: another pipeline's jobs and buckets stay out of reach."""
    sm, ex = built.state_machine_role, built.execution_role
    assert not sm.allows("sagemaker:CreateTrainingJob", sm_arn("training-job", "other-train-0a1b2c3d"))
    assert not sm.allows("sagemaker:AddTags", sm_arn("training-job", "other-train-0a1b2c3d"))
    assert not sm.allows("sagemaker:UpdateEndpoint", sm_arn("endpoint", "someone-elses-endpoint"))
    assert not ex.allows("s3:PutObject", f"arn:aws:s3:::{built.resolver.values.data_bucket}/bin-images/1.jpg")
    assert not ex.allows("s3:GetObject", "arn:aws:s3:::cdk-hnb659fds-assets-123456789012-us-east-1/another-asset.zip")
    assert not ex.allows("s3:ListBucket", "arn:aws:s3:::cdk-hnb659fds-assets-123456789012-us-east-1", {"s3:prefix": "another"})
    assert not ex.allows("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/EC2"})


def test_evaluator_sees_conditions_moto_alone_would_pass() -> None:
    """The evaluator must reject an ArnLike that moto's engine ignores (the log-group '/' versus ':' fault)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    statement = {
        "Effect": "Allow",
        "Action": "kms:GenerateDataKey",
        "Resource": "*",
        "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:123456789012:log-group/*"}},
    }
    real = {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/x"}
    moto_result = IAMPolicy(json.dumps({"Version": "2012-10-17", "Statement": [statement]})).is_action_permitted(
        "kms:GenerateDataKey", "*", incoming_condition_values=real
    )
    assert moto_result == PermissionResult.PERMITTED  # moto alone: a false pass
    assert not PolicyEvaluator([statement]).allows("kms:GenerateDataKey", "*", real)


# --- issue 12: the pretrained channel -------------------------------------------------------------------------------


def _pretrained_requests(built: Built, pretrained: str) -> dict[str, list[Request]]:
    """What Tune's trials and Train need to read the `pretrained` channel of a run with this settings.pretrained."""
    needs = execution_role_needs(replace(built, doc=with_pretrained(built.states, built.doc, pretrained)))
    out = {state: [r for r in needs[state] if "channel pretrained" in r.why] for state in ("Tune", "Train")}
    assert all(out.values()), f"no pretrained-channel needs derived for {pretrained}: {out}"
    return out


def _allowed_prefixes(built: Built) -> list[str]:
    """The prefixes the "Check input pretrained" state accepts (found by content: its StringMatches patterns)."""
    rules = json.dumps([s for s in built.states.values() if s["Type"] == "Choice"])
    return sorted(set(re.findall(r'"StringMatches": "(s3://[^"*]+/)\*"', rules)))


def test_cdk_json_weights_prefix_is_the_default_channel(built: Built) -> None:
    """The config's S3 prefix reaches every trial's and Train's InputDataConfig (the role's reads are checked above)."""
    default = built.doc["settings"]["pretrained"]
    for state in ("Tune", "Train"):
        params = concrete(built.tasks[state]["Parameters"], built.doc)
        definition = params.get("TrainingJobDefinition", params)
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in definition["InputDataConfig"]}
        hp = definition.get("StaticHyperParameters") or definition["HyperParameters"]
        if built.config == "defaults":
            assert "pretrained" not in channels and hp["pretrained-weights"] == default in ("imagenet", "none")
        else:
            assert channels["pretrained"] == default == CONFIGURED_WEIGHTS and "pretrained-weights" not in hp


def test_execution_role_reads_weights_under_each_allowed_prefix_and_nothing_else(built: Built) -> None:
    """Every prefix the input check accepts is readable (objects, listing, the bucket's KMS key); other prefixes are not.
    Without the Pretrained* statements the same requests are denied: the grant is what allows them."""
    artifacts = built.resolver.values.artifacts_bucket
    prefixes = _allowed_prefixes(built)
    expected = [f"s3://{artifacts}/pretrained/"] + ([CONFIGURED_WEIGHTS] if built.config != "defaults" else [])
    assert prefixes == sorted(expected)
    documents = role_policy_documents(built.template, "SageMakerExecutionRole", built.resolver)
    sids = {s.get("Sid") for d in documents for s in d["Statement"]}
    assert {"PretrainedRead", "PretrainedList"} <= sids
    without_grant = PolicyEvaluator([s for d in documents for s in d["Statement"] if not str(s.get("Sid", "")).startswith("Pretrained")])
    for prefix in prefixes:
        requests = _pretrained_requests(built, prefix + "resnet18/")
        actions = {r.action for reqs in requests.values() for r in reqs}
        assert {"s3:GetObject", "s3:ListBucket"} <= actions
        if prefix.startswith(f"s3://{artifacts}/"):
            assert "kms:Decrypt" in actions  # SSE-KMS artifacts bucket
        assert not _denied(built.execution_role, requests), _denied(built.execution_role, requests)
        s3_requests = {s: [r for r in reqs if r.action.startswith("s3:")] for s, reqs in requests.items()}
        assert len(_denied(without_grant, s3_requests)) == sum(len(r) for r in s3_requests.values()), prefix
    # Outside the prefixes: the role reads no weights (the input check refuses these URIs before any job).
    for outside in (f"s3://{artifacts}/pretrainedx/resnet18/", f"s3://{artifacts}/serving/", "s3://team-weights-bucket/other/"):
        s3_requests = {s: [r for r in reqs if r.action.startswith("s3:")] for s, reqs in _pretrained_requests(built, outside).items()}
        assert len(_denied(built.execution_role, s3_requests)) == sum(len(r) for r in s3_requests.values()), outside


def test_configured_weights_prefix_passes_cdk_nag(built: Built) -> None:
    """Its read grant is a wildcard under that prefix only: acknowledged one by one, nothing else left unacknowledged."""
    if built.config == "defaults":
        pytest.skip("cdk.json's defaults: tests/infra/test_app.py checks their nag findings")
    assert nag_findings(built.stack, warnings=False) == []

"""The Parameters of every SageMaker call the state machine makes (the API's own shapes, ".$" = from the state).

Paths read the state document that definition.py builds:
  $.settings   the execution input merged over the defaults (input_schema.py)
  $.names      job/model/config names derived from the run id; $.paths the run's S3 locations
  $.data       the data format's choices: prep.py's arguments, the train channel's distribution (chain_input.py)
  $.fixed      static and SageMaker-container hyperparameters; $.trainHp.values the merged set
  $.inputs     channels (train, validation, test and, for S3 weights, pretrained) and the trials' static hyperparameters
  $.training   the training job's name and model artifact
  $.serving    the serving record read before Prepare (its accuracy, or deploy_rule.NO_SERVING_MODEL)
"""

from __future__ import annotations

from typing import Any

import metrics_format
import search_space

from infra.pipeline.input_schema import PRETRAINED_HYPERPARAMETER
from infra.pipeline.layout import DATA_CAPTURE_PREFIX, EVALUATION_FILE, GATE_FILE, VARIANT_NAME
from infra.pipeline.settings import CODE_DIR, FILE_LIST_PATH, DefinitionSettings

VOLUME_GB = 50
PROCESSING_OUTPUT = "/opt/ml/processing/output"
EVALUATION_DIR = "/opt/ml/processing/evaluation"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
# The asset is one tar.gz (CDK names it <hash>.gz) under CODE_DIR; unpack it, then run the entry point with the job's arguments.
_UNPACK = f"set -euo pipefail; cd {CODE_DIR}; tar -xzf ./*.gz; "


def sagemaker_hyperparameters(s: DefinitionSettings) -> dict[str, str]:
    """What the PyTorch container needs to fetch and launch train.py (DESIGN.md, multi-instance training)."""
    return {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": s.code_s3_url,
        "sagemaker_region": s.config.region,
        "sagemaker_torch_distributed_enabled": "true" if s.distributed else "false",
        "sagemaker_container_log_level": "20",
    }


def trial_sagemaker_hyperparameters(s: DefinitionSettings) -> dict[str, str]:
    """Tuning trials run on one instance each: no torchrun across instances."""
    return {**sagemaker_hyperparameters(s), "sagemaker_torch_distributed_enabled": "false"}


def static_hyperparameters() -> dict[str, str]:
    """search_space's fixed hyperparameters, less the weights: the pipeline's `pretrained` setting chooses those."""
    if PRETRAINED_HYPERPARAMETER in search_space.SEARCH_SPACE:
        raise ValueError(
            f"search_space.SEARCH_SPACE must not tune {PRETRAINED_HYPERPARAMETER!r}: the pipeline's pretrained setting chooses it"
        )
    return {name: value for name, value in search_space.STATIC_HYPERPARAMETERS.items() if name != PRETRAINED_HYPERPARAMETER}


def _code_input(s: DefinitionSettings) -> dict[str, Any]:
    source = {
        "S3Uri": s.code_s3_url,
        "LocalPath": CODE_DIR,
        "S3DataType": "S3Prefix",
        "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated",
    }
    return {"InputName": "code", "S3Input": source}


def processing_input(name: str, uri_path: str, local: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri.$": uri_path,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def processing_job(
    s: DefinitionSettings,
    name_path: str,
    script: str,
    arguments: str,
    inputs: list[dict],
    output_name: str,
    output_local: str,
    output_path: str,
    environment: dict[str, str] | None = None,
    instance_count_path: str | None = None,
) -> dict[str, Any]:
    """`arguments` is an intrinsic or a path giving ContainerArguments; `instance_count_path` a path to the instance count (default 1)."""
    instances: dict[str, Any] = {"InstanceCount.$": instance_count_path} if instance_count_path else {"InstanceCount": 1}
    job = {
        "ProcessingJobName.$": name_path,
        "RoleArn": s.execution_role_arn,
        "AppSpecification": {
            "ImageUri": s.images.processing,
            "ContainerEntrypoint": ["/bin/bash", "-c", _UNPACK + script, output_name],
            "ContainerArguments.$": arguments,
        },
        "ProcessingInputs": [_code_input(s), *inputs],
        "ProcessingOutputConfig": {
            "Outputs": [
                {"OutputName": output_name, "S3Output": {"S3Uri.$": output_path, "LocalPath": output_local, "S3UploadMode": "EndOfJob"}}
            ],
            "KmsKeyId": s.data_key_arn,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                **instances,
                "InstanceType": s.config.processing_instance_type,
                "VolumeSizeInGB": VOLUME_GB,
                "VolumeKmsKeyId": s.data_key_arn,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": s.config.max_runtime_seconds},
    }
    return {**job, "Environment": environment} if environment else job


def prepare_arguments(s: DefinitionSettings, *, subset: bool, shards: bool) -> str:
    """prep.py's arguments as a States.Array: the Udacity file list (subset) or none (prep lists the whole source,
    paging), and `--format shards` (each Processing instance finds its share from its own resource config) with
    `--upload-to` the run's prepare/ prefix: prep uploads each finished shard and deletes it, so an instance's
    volume holds about a shard per split (the EndOfJob output then adds only the manifests and summaries).
    npy splits also get `--auxiliary`: the photos with fewer or more items than the classes go to train/auxiliary/,
    which travels with the train channel and which train.py trains on (issue 12, docs/benchmarks.md §5a)."""
    classes = ",".join(str(c) for c in s.config.classes)
    file_list = f", '--file-list', '{FILE_LIST_PATH}'" if subset else ""
    data_format = ", '--format', 'shards', '--upload-to', $.paths.prepared" if shards else ", '--auxiliary'"
    return f"States.Array('--source', $.settings.dataSource{file_list}, '--classes', '{classes}', '--output', '{PROCESSING_OUTPUT}'{data_format})"


def prepare_job(s: DefinitionSettings) -> dict[str, Any]:
    """prep.py on $.settings.prepareInstances instances, with the arguments the data-format states chose ($.data)."""
    return processing_job(
        s,
        "$.names.prepare",
        'exec python3 prep.py "$@"',
        "$.data.prepareArguments",
        [],
        "prepared",
        PROCESSING_OUTPUT,
        "$.paths.prepared",
        instance_count_path="$.settings.prepareInstances",
    )


def evaluate_job(s: DefinitionSettings) -> dict[str, Any]:
    """evaluate.py on the test split, then deploy_rule.py writes the deploy decision (gate.json) beside evaluation.json.

    The decision needs the run's deploy mode and the serving model's accuracy: both reach the job as environment
    variables (a Processing job's ContainerArguments go to evaluate.py).
    """
    margin = f"{s.config.deploy_margin_over_baseline:g}"
    script = (
        'python3 evaluate.py "$@"; '
        f"exec python3 deploy_rule.py --evaluation {EVALUATION_DIR}/{EVALUATION_FILE} --margin {margin} "
        f'--mode "$DEPLOY_MODE" --serving-accuracy "$SERVING_ACCURACY" --output {EVALUATION_DIR}/{GATE_FILE}'
    )
    arguments = f"States.Array('--model', '/opt/ml/processing/model/model.tar.gz', '--test', '/opt/ml/processing/test', '--output', '{EVALUATION_DIR}')"
    inputs = [
        processing_input("model", "$.training.modelArtifacts", "/opt/ml/processing/model"),
        processing_input("test", "$.paths.test", "/opt/ml/processing/test"),
    ]
    environment = {"DEPLOY_MODE.$": "$.settings.deploy", "SERVING_ACCURACY.$": "States.Format('{}', $.serving.record.accuracy)"}
    return processing_job(
        s, "$.names.evaluation", script, arguments, inputs, "evaluation", EVALUATION_DIR, "$.paths.evaluation", environment
    )


def channels(*, pretrained: bool) -> list[dict[str, Any]]:
    """InputDataConfig: the prepared splits, plus the `pretrained` channel (train.py reads SM_CHANNEL_PRETRAINED) for S3 weights.

    The train channel's input mode is the data format's ($.data.trainInputMode): File for npy (copied to the volume),
    FastFile for shards (streamed: each instance reads only the shard files its ranks open). Every channel is
    FullyReplicated: the shard reader, not S3, splits the shards among ranks, reshuffled every epoch.
    """
    sources = {channel: f"$.paths.{channel}" for channel in ("train", "validation", "test")}
    if pretrained:
        sources["pretrained"] = "$.settings.pretrained"

    def channel(name: str, path: str) -> dict[str, Any]:
        source = {"S3DataType": "S3Prefix", "S3Uri.$": path, "S3DataDistributionType": "FullyReplicated"}
        mode = {"InputMode.$": "$.data.trainInputMode"} if name == "train" else {}
        return {"ChannelName": name, "DataSource": {"S3DataSource": source}, **mode}

    return [channel(name, path) for name, path in sources.items()]


def _stopping(s: DefinitionSettings) -> dict[str, int]:
    stopping = {"MaxRuntimeInSeconds": s.config.max_runtime_seconds}
    if s.config.use_spot:
        stopping["MaxWaitTimeInSeconds"] = s.config.max_wait_seconds
    return stopping


def tuning_job(s: DefinitionSettings) -> dict[str, Any]:
    definition: dict[str, Any] = {
        # static < the weights' choice < trial_sagemaker_hyperparameters, merged by "Build trial hyperparameters"
        "StaticHyperParameters.$": "$.inputs.trialStaticHp",
        "AlgorithmSpecification": {
            "TrainingImage": s.images.tuning,
            "TrainingInputMode": "File",
            "MetricDefinitions": metrics_format.METRIC_DEFINITIONS,
        },
        "RoleArn": s.execution_role_arn,
        "InputDataConfig.$": "$.inputs.channels",
        "OutputDataConfig": {"S3OutputPath.$": "$.paths.tuneOutput", "KmsKeyId": s.data_key_arn},
        "ResourceConfig": {"InstanceType": s.config.tuning_instance_type, "InstanceCount": 1, "VolumeSizeInGB": VOLUME_GB},
        "StoppingCondition": _stopping(s),
        "EnableManagedSpotTraining": s.config.use_spot,
    }
    # No CheckpointConfig for trials: one checkpoint prefix shared by every trial would let a trial resume
    # another trial's weights. An interrupted spot trial restarts from scratch (trials are short).
    return {
        "HyperParameterTuningJobName.$": "$.names.tuning",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": metrics_format.OBJECTIVE_TYPE, "MetricName": metrics_format.OBJECTIVE_METRIC},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs.$": "$.settings.tuningMaxJobs",
                "MaxParallelTrainingJobs.$": "$.settings.tuningMaxParallelJobs",
            },
            "ParameterRanges": search_space.to_sagemaker_ranges(),
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": definition,
    }


def training_job(s: DefinitionSettings) -> dict[str, Any]:
    params: dict[str, Any] = {
        "TrainingJobName.$": "$.names.training",
        "RoleArn": s.execution_role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": s.images.training,
            "TrainingInputMode": "File",
            "MetricDefinitions": metrics_format.METRIC_DEFINITIONS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters.$": "$.trainHp.values",
        "InputDataConfig.$": "$.inputs.channels",
        "OutputDataConfig": {"S3OutputPath.$": "$.paths.trainOutput", "KmsKeyId": s.data_key_arn},
        "ResourceConfig": {
            "InstanceType": s.config.training_instance_type,
            "InstanceCount.$": "$.settings.trainingInstanceCount",
            "VolumeSizeInGB": VOLUME_GB,
        },
        "StoppingCondition": _stopping(s),
        "EnableManagedSpotTraining": s.config.use_spot,
        # System profiling (CPU/GPU/memory/IO) for the console's Profiler view.
        "ProfilerConfig": {"S3OutputPath.$": "$.paths.profiler", "ProfilingIntervalInMilliseconds": 500},
    }
    if s.config.use_spot:
        params["CheckpointConfig"] = {"S3Uri.$": "$.paths.checkpoints", "LocalPath": CHECKPOINT_DIR}
    return params


def model(s: DefinitionSettings) -> dict[str, Any]:
    return {
        "ModelName.$": "$.names.model",
        "ExecutionRoleArn": s.execution_role_arn,
        "PrimaryContainer": {
            "Image": s.images.inference,
            "ModelDataUrl.$": "$.training.modelArtifacts",
            # model.tar.gz carries code/inference.py (docs/contracts.md, model dir).
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                "SAGEMAKER_REGION": s.config.region,
            },
        },
    }


def endpoint_config(s: DefinitionSettings) -> dict[str, Any]:
    cfg = s.config
    variant: dict[str, Any] = {"VariantName": VARIANT_NAME, "ModelName.$": "$.names.model"}
    params: dict[str, Any] = {"EndpointConfigName.$": "$.names.endpointConfig", "ProductionVariants": [variant]}
    if cfg.endpoint_mode == "serverless":
        # Serverless endpoints support neither data capture nor a volume KMS key.
        variant["ServerlessConfig"] = {"MemorySizeInMB": cfg.serverless_memory_mb, "MaxConcurrency": cfg.serverless_max_concurrency}
        return params
    variant.update(
        {"InstanceType": cfg.endpoint_instance_type, "InitialInstanceCount": cfg.endpoint_min_instances, "InitialVariantWeight": 1}
    )
    params["KmsKeyId"] = s.data_key_arn
    params["DataCaptureConfig"] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": s.s3(f"{DATA_CAPTURE_PREFIX}{cfg.endpoint_name}"),
        "KmsKeyId": s.data_key_arn,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    return params


def update_endpoint(s: DefinitionSettings) -> dict[str, Any]:
    params: dict[str, Any] = {"EndpointName": s.config.endpoint_name, "EndpointConfigName.$": "$.names.endpointConfig"}
    if s.config.endpoint_mode == "instance":
        # Blue/green: the new fleet takes all traffic at once, bakes 5 minutes watching the 5xx alarm,
        # and SageMaker rolls back to the previous endpoint config if the alarm fires.
        params["DeploymentConfig"] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
                "TerminationWaitInSeconds": 300,
                "MaximumExecutionTimeoutInSeconds": 3600,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": s.rollback_alarm_name}]},
        }
    return params


def scalable_target(s: DefinitionSettings) -> dict[str, Any]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{s.config.endpoint_name}/variant/{VARIANT_NAME}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": s.config.endpoint_min_instances,
        "MaxCapacity": s.config.endpoint_max_instances,
    }


def scaling_policy(s: DefinitionSettings) -> dict[str, Any]:
    return {
        "PolicyName": f"{s.prefix}-invocations-per-instance",
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{s.config.endpoint_name}/variant/{VARIANT_NAME}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": s.config.endpoint_target_invocations_per_instance,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    }

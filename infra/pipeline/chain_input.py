"""The input chain: validate input -> defaults -> job names -> data format -> pretrained weights -> the serving record.

Everything here runs before any job is paid for: a malformed input or an unreadable serving record ends the
run at once.
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from deploy_rule import NO_SERVING_MODEL

from infra.pipeline import sagemaker_params as params
from infra.pipeline.input_schema import PRETRAINED_HYPERPARAMETER, InputValidation, defaults, pretrained_prefixes
from infra.pipeline.layout import CHECKPOINTS_PREFIX, RUNS_PREFIX, SERVING_RECORD_KEY
from infra.pipeline.settings import JOB_KINDS
from infra.pipeline.states import C, Segment, StateBuilder, has_fraction

SERVING_RECORD_ABSENT_ERRORS = ["S3.NoSuchKeyException"]


def input_chain(b: StateBuilder) -> Segment:
    """Validation, settings and names, the weights' channel or flag, then the serving record check."""
    validation = InputValidation(b.scope, "Validation", pretrained_prefixes=pretrained_prefixes(b.s.config, b.s.artifacts_bucket))
    settings = _settings(b)
    data = _data_format(b)
    weights = _pretrained_weights(b)
    serving = _serving_record(b)
    validation.valid.next(settings.start)
    settings.connect(data.start)
    data.connect(weights.start)
    weights.connect(serving.start)
    return Segment(validation.start, serving.connect)


def _settings(b: StateBuilder) -> Segment:
    """The input merged over cdk.json's defaults, its counts checked, a run id and the names and paths it gives."""
    apply_defaults = b.pass_state(
        "Apply defaults",
        parameters={
            "defaults": defaults(b.s.config),
            "input.$": "$.input",
            "fixed": {
                "staticHp": params.static_hyperparameters(),
                "sagemakerHp": params.sagemaker_hyperparameters(b.s),
                "trialSagemakerHp": params.trial_sagemaker_hyperparameters(b.s),
            },
        },
    )
    merge_settings = b.pass_state(
        "Merge input over defaults",
        parameters={"settings.$": "States.JsonMerge($.defaults, $.input, false)", "fixed.$": "$.fixed"},
    )
    # Choice rules cannot tell 2 from 2.5; the JSON text of the counts can.
    counts_as_text = b.pass_state(
        "Write counts as text",
        parameters={
            "text.$": "States.JsonToString(States.Array($.settings.trainingInstanceCount, $.settings.tuningMaxJobs, "
            "$.settings.tuningMaxParallelJobs, $.settings.prepareInstances))"
        },
        result_path="$.counts",
    )
    check_whole = b.choice("Check counts are whole numbers")
    not_whole = b.fail(
        "Input rejected: whole numbers",
        error="InvalidExecutionInput",
        cause='input fields "trainingInstanceCount", "tuningMaxJobs", "tuningMaxParallelJobs" and "prepareInstances" must be whole numbers such as 2, not 2.5',
    )
    check_budget = b.choice("Check tuning budget")
    budget_rejected = b.fail(
        "Input rejected: tuning budget",
        error="InvalidExecutionInput",
        cause='input field "tuningMaxParallelJobs" must not exceed tuningMaxJobs',
    )
    make_run_id = b.pass_state(
        "Make run id",
        # 8 hex characters of a fresh UUID: unique per run, short enough for SageMaker's name limits.
        parameters={"id.$": "States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0)"},
        result_path="$.run",
    )
    name_jobs = b.pass_state("Name jobs", parameters=_job_names(b), result_path="$.names")
    name_paths = b.pass_state("Name run paths", parameters=_run_paths(b), result_path="$.paths")

    apply_defaults.next(merge_settings).next(counts_as_text).next(check_whole)
    check_whole.when(has_fraction("$.counts.text"), not_whole)
    check_whole.otherwise(check_budget)
    check_budget.when(C.number_greater_than_json_path("$.settings.tuningMaxParallelJobs", "$.settings.tuningMaxJobs"), budget_rejected)
    check_budget.otherwise(make_run_id)
    make_run_id.next(name_jobs).next(name_paths)
    return Segment(apply_defaults, name_paths.next)


def _job_names(b: StateBuilder) -> dict[str, str]:
    return {f"{kind}.$": f"States.Format('{b.s.prefix}-{part}-{{}}', $.run.id)" for kind, part in JOB_KINDS.items()}


def _run_paths(b: StateBuilder) -> dict[str, str]:
    def uri(key: str) -> str:
        return f"States.Format('{b.s.s3(key)}', $.run.id)"

    run = RUNS_PREFIX + "{}"
    return {
        "prepared.$": uri(f"{run}/prepare/"),
        "train.$": uri(f"{run}/prepare/train/"),
        "validation.$": uri(f"{run}/prepare/validation/"),
        "test.$": uri(f"{run}/prepare/test/"),
        "tuneOutput.$": uri(f"{run}/tune/"),
        "trainOutput.$": uri(f"{run}/train/"),
        "checkpoints.$": uri(CHECKPOINTS_PREFIX + "{}/train/"),
        "profiler.$": uri(f"{run}/profiler/"),
        "evaluation.$": uri(f"{run}/evaluate/"),
    }


def _data_format(b: StateBuilder) -> Segment:
    """$.data: how Prepare writes the splits (prep.py's arguments) and how the train channel is distributed.

    npy (the subset on one instance, cdk.json's defaults): the request Prepare always made. shards (dataFormat
    shards, dataset all, or more than one Prepare instance): prep.py `--format shards` on $.settings.prepareInstances
    instances, and the train channel is read in FastFile mode (FullyReplicated: every instance sees every manifest,
    and training_code/shards.py's reader gives each rank its own block of shards per epoch, so an instance streams
    only the shard files its ranks open).
    """
    always_shards = b.s.config.data_format == "shards"
    choose = b.choice("Data format?")
    subset_shards = b.pass_state("Use shards of the subset", parameters=_data_settings(b, subset=True, shards=True), result_path="$.data")
    every_photo = b.pass_state("Use shards of every photo", parameters=_data_settings(b, subset=False, shards=True), result_path="$.data")
    choose.when(C.string_equals("$.settings.dataset", "all"), every_photo)
    npy = None
    if always_shards:
        choose.otherwise(subset_shards)
    else:
        npy = b.pass_state("Use npy splits", parameters=_data_settings(b, subset=True, shards=False), result_path="$.data")
        choose.when(C.number_greater_than("$.settings.prepareInstances", 1), subset_shards)
        choose.otherwise(npy)

    def connect(following: sfn.IChainable) -> None:
        if npy is not None:
            npy.next(following)
        subset_shards.next(following)
        every_photo.next(following)

    return Segment(choose, connect)


def _data_settings(b: StateBuilder, *, subset: bool, shards: bool) -> dict[str, str]:
    arguments = params.prepare_arguments(b.s, subset=subset, shards=shards)
    if not shards:
        return {"format": "npy", "trainInputMode": "File", "prepareArguments.$": arguments}
    return {"format": "shards", "trainInputMode": "FastFile", "prepareArguments.$": arguments}


def _pretrained_weights(b: StateBuilder) -> Segment:
    """An S3 URI is the `pretrained` channel; imagenet / none the train.py flag.

    $.inputs: the InputDataConfig of every trial and of Train, the weights' hyperparameters, and the trials'
    StaticHyperParameters. settings.pretrained is always a string here (validated, or cdk.json's default).
    """
    weights_from_s3 = b.choice("Pretrained weights from S3?")
    pretrained_channel = b.pass_state(
        "Add pretrained channel",
        parameters={"channels": params.channels(pretrained=True), "hyperparameters": {}},
        result_path="$.inputs",
    )
    weights_flag = b.pass_state(
        "Set pretrained-weights hyperparameter",
        parameters={
            "channels": params.channels(pretrained=False),
            "hyperparameters": {f"{PRETRAINED_HYPERPARAMETER}.$": "$.settings.pretrained"},
        },
        result_path="$.inputs",
    )
    trial_hp = b.pass_state(
        "Build trial hyperparameters",
        # static < the weights' choice < the container's sagemaker_* settings (no torchrun across trials)
        parameters={
            "channels.$": "$.inputs.channels",
            "hyperparameters.$": "$.inputs.hyperparameters",
            "trialStaticHp.$": "States.JsonMerge(States.JsonMerge($.fixed.staticHp, $.inputs.hyperparameters, false), $.fixed.trialSagemakerHp, false)",
        },
        result_path="$.inputs",
    )
    weights_from_s3.when(C.string_matches("$.settings.pretrained", "s3://*"), pretrained_channel)
    weights_from_s3.otherwise(weights_flag)
    pretrained_channel.next(trial_hp)
    weights_flag.next(trial_hp)
    return Segment(weights_from_s3, trial_hp.next)


def _serving_record(b: StateBuilder) -> Segment:
    """$.serving: the serving record, checked before any job; its accuracy (or NO_SERVING_MODEL) goes to the Evaluate job."""
    record_needed = b.choice("Serving record needed?")
    record_not_needed = b.pass_state(
        "Serving record not compared",
        # deploy=force / never: the gate does not compare, so a broken record must not stop the run.
        result=sfn.Result.from_object({"present": False, "compared": False, "record": {"accuracy": NO_SERVING_MODEL}}),
        result_path="$.serving",
    )
    record_location = f"s3://{b.s.artifacts_bucket}/{SERVING_RECORD_KEY}"
    read_serving = b.read_json(
        "Read serving record",
        {"Key": SERVING_RECORD_KEY},
        "$.serving",
        "record",
        catch=False,
        extra={"present": True, "compared": True},
    )
    no_serving = b.pass_state(
        "No model serving yet",
        result=sfn.Result.from_object({"present": False, "compared": True, "record": {"accuracy": NO_SERVING_MODEL}}),
        result_path="$.serving",
    )
    read_serving.add_catch(no_serving, errors=SERVING_RECORD_ABSENT_ERRORS, result_path="$.servingError")
    b.catch(
        read_serving,
        "Read serving record",
        hint=f"{record_location} could not be read as JSON: fix or delete it, or start the run with deploy=force. ",
    )
    check_record = b.choice("Serving record readable?")
    record_unreadable = b.failure_pass(
        "Serving record unreadable",
        f"States.Format('{record_location} has no accuracy from 0 to 1: fix or delete it, or start the run with deploy=force. "
        "Record: {}', States.JsonToString($.serving.record))",
    )
    record_needed.when(C.or_(*(C.string_equals("$.settings.deploy", mode) for mode in ("force", "never"))), record_not_needed)
    record_needed.otherwise(read_serving)
    read_serving.next(check_record)
    check_record.otherwise(record_unreadable)
    accuracy = "$.serving.record.accuracy"
    readable = C.and_(
        C.is_present(accuracy),
        C.is_numeric(accuracy),
        C.number_greater_than_equals(accuracy, 0),
        C.number_less_than_equals(accuracy, 1),
    )

    def connect(following: sfn.IChainable) -> None:
        record_not_needed.next(following)
        no_serving.next(following)
        check_record.when(readable, following)

    return Segment(record_needed, connect)

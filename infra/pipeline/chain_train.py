"""The train chain: Prepare -> (Tune | given hyperparameters) -> merge hyperparameters -> Train.

The SageMaker jobs use the .sync integration (Step Functions waits for the job to finish); the Parameters of
each call are built in sagemaker_params.py.
"""

from __future__ import annotations

from infra.pipeline import sagemaker_params as params
from infra.pipeline.states import C, Segment, StateBuilder


def train_chain(b: StateBuilder) -> Segment:
    prepare = b.task(
        "Prepare",
        "sagemaker:createProcessingJob.sync",
        params.prepare_job(b.s),
        result_selector={"job.$": "$.ProcessingJobName"},
        result_path="$.prepare",
        job_kind="prepare",
    )
    tuning_wanted = b.choice("Hyperparameters given?")
    use_given = b.pass_state(
        "Use given hyperparameters",
        parameters={"values.$": "$.settings.hyperparameters", "source": "input"},
        result_path="$.chosen",
    )
    tune = _tune(b)
    merge_hp = b.pass_state(
        "Merge hyperparameters",
        # static < chosen (given or tuned) < the weights' choice < the container's sagemaker_* settings
        parameters={
            "values.$": "States.JsonMerge(States.JsonMerge(States.JsonMerge($.fixed.staticHp, $.chosen.values, false), "
            "$.inputs.hyperparameters, false), $.fixed.sagemakerHp, false)"
        },
        result_path="$.trainHp",
    )
    train = b.task(
        "Train",
        "sagemaker:createTrainingJob.sync",
        params.training_job(b.s),
        result_selector={"job.$": "$.TrainingJobName", "modelArtifacts.$": "$.ModelArtifacts.S3ModelArtifacts"},
        result_path="$.training",
        job_kind="training",
    )
    prepare.next(tuning_wanted)
    tuning_wanted.when(C.is_present("$.settings.hyperparameters"), use_given)
    tuning_wanted.otherwise(tune.start)
    tune.connect(merge_hp)
    use_given.next(merge_hp)
    merge_hp.next(train)
    return Segment(prepare, train.next)


def _tune(b: StateBuilder) -> Segment:
    """The tuning job, and its best training job's hyperparameters as $.chosen."""
    tune = b.task(
        "Tune",
        "sagemaker:createHyperParameterTuningJob.sync",
        params.tuning_job(b.s),
        # BestTrainingJob is optional in DescribeHyperParameterTuningJob's answer: checked below, not
        # selected here (a missing ResultSelector path is a States.Runtime error on AWS).
        result_selector={"job.$": "$.HyperParameterTuningJobName", "description.$": "$"},
        result_path="$.tuning",
        job_kind="tuning",
    )
    best_found = b.choice("Tuning found a best job?")
    no_best = b.failure_pass(
        "Tune found no best training job",
        "States.Format('Tuning job {} completed without a best training job: no trial reported the objective metric. "
        "Description: {}', $.tuning.job, States.JsonToString($.tuning.description.TrainingJobStatusCounters))",
    )
    keep_tuning = b.pass_state(
        "Keep tuning summary",
        parameters={
            "job.$": "$.tuning.job",
            "bestTrainingJob.$": "$.tuning.description.BestTrainingJob.TrainingJobName",
            "hyperparameters.$": "$.tuning.description.BestTrainingJob.TunedHyperParameters",
        },
        result_path="$.tuning",
    )
    use_best = b.pass_state(
        "Use best hyperparameters",
        parameters={"values.$": "$.tuning.hyperparameters", "source.$": "$.tuning.job"},
        result_path="$.chosen",
    )
    tune.next(best_found)
    best = "$.tuning.description.BestTrainingJob"
    best_found.when(C.and_(C.is_present(f"{best}.TrainingJobName"), C.is_present(f"{best}.TunedHyperParameters")), keep_tuning)
    best_found.otherwise(no_best)
    keep_tuning.next(use_best)
    return Segment(tune, use_best.next)

"""The training pipeline as a Step Functions definition, built by four chains that read top to bottom.

    input  (chain_input.py):  validate input -> defaults -> job names -> data format (npy | shards)
                              -> pretrained weights: channel or hyperparameter
                              -> read + check the serving record (unless force/never)
    train  (chain_train.py):  Prepare -> (Tune | given hyperparameters) -> Train
    gate   (chain_gate.py):   Evaluate (writes the deploy decision) -> read evaluation + decision -> Gate: deploy?
    deploy (chain_deploy.py): Create model -> Create endpoint config -> Create or Update endpoint
                              -> wait until InService -> autoscaling -> record what serves -> Notify
Every Task catches every error into "<step> failed" -> Notify failure -> Fail (states.py).

Run-time errors that no Catch can take: on AWS a Choice rule on a missing path, a path in Parameters /
ResultSelector that is not there, and an intrinsic function given the wrong kind of value fail the
execution with States.Runtime, which `States.ALL` does not match, and Pass/Choice states cannot Catch at all
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). So every path a Choice
or Pass reads is written by an earlier state or checked with IsPresent first, every value from outside
(input, S3 files, service answers) is checked before a Pass uses it, and ResultSelectors only read fields
the service API marks required. tests/pipeline/test_definition_static.py checks all of this on the
rendered definition.
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.pipeline.chain_deploy import deploy_chain
from infra.pipeline.chain_gate import gate_chain
from infra.pipeline.chain_input import input_chain
from infra.pipeline.chain_train import train_chain
from infra.pipeline.settings import DefinitionSettings
from infra.pipeline.states import StateBuilder


class PipelineDefinition(Construct):
    """Builds every state; `.start` is the first one."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DefinitionSettings) -> None:
        super().__init__(scope, construct_id)
        states = StateBuilder(self, settings)
        chains = [input_chain(states), train_chain(states), gate_chain(states), deploy_chain(states)]
        for chain, following in zip(chains, chains[1:], strict=False):
            chain.connect(following.start)
        self.start: sfn.IChainable = chains[0].start

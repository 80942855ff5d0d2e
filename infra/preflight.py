"""make preflight: what a first deploy and a first pipeline run need that CloudFormation cannot express.

With AWS credentials it checks, in the region of cdk.json:
- SageMaker service quotas for the configured instance types (training or spot training, processing,
  endpoint; serverless concurrency), against what one run uses at its peak;
- that the dataset bucket (cdk.json datasetSource) can be listed with these credentials;
- that the CDK bootstrap stack (CDKToolkit) exists and is recent enough for this CDK version;
and prints what to request. Without credentials it prints the list of what it would check.

    python -m infra.preflight [--region REGION] [--context cdk.json]

Exit status: 0 when every check passed (or nothing could be checked without credentials), 1 when something
must be requested or fixed first, 2 on bad arguments or an unreadable cdk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infra.config import AppConfig, ConfigError, config_from_mapping

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_STACK = "CDKToolkit"
MIN_BOOTSTRAP_VERSION = 6  # what aws-cdk-lib 2.x's default synthesizer requires
OK, REQUEST, FAIL, UNKNOWN = "OK", "REQUEST", "FAIL", "UNKNOWN"


@dataclass
class Need:
    """One SageMaker quota (by its Service Quotas name) and the most this app uses of it at once."""

    quota_name: str
    needed: int
    reasons: list[str] = field(default_factory=list)


@dataclass
class Result:
    status: str
    subject: str
    detail: str
    request: str = ""  # what to ask for / do, when status is not OK


def quota_needs(cfg: AppConfig) -> list[Need]:
    """Peak use per quota. Tune and Train run one after the other, so a shared quota needs the larger of the two."""
    kind = "spot training job usage" if cfg.use_spot else "training job usage"
    needs: dict[str, Need] = {}

    def add(name: str, count: int, reason: str) -> None:
        need = needs.setdefault(name, Need(name, 0))
        need.needed = max(need.needed, count)
        need.reasons.append(reason)

    add(
        f"{cfg.processing_instance_type} for processing job usage",
        cfg.prepare_instance_count,
        f"Prepare on prepareInstanceCount={cfg.prepare_instance_count} instances, then Evaluate on one",
    )
    add(
        f"{cfg.tuning_instance_type} for {kind}",
        cfg.tuning_max_parallel_jobs,
        f"Tune: tuningMaxParallelJobs={cfg.tuning_max_parallel_jobs} trials at once",
    )
    add(
        f"{cfg.training_instance_type} for {kind}",
        cfg.training_instance_count,
        f"Train: trainingInstanceCount={cfg.training_instance_count}",
    )
    if cfg.endpoint_mode == "instance":
        add(
            f"{cfg.endpoint_instance_type} for endpoint usage",
            2 * cfg.endpoint_max_instances,
            f"endpoint: up to endpointMaxInstances={cfg.endpoint_max_instances}, doubled while a blue/green update bakes the new fleet",
        )
    else:
        add(
            "Maximum total concurrency that can be allocated across all serverless endpoints",
            cfg.serverless_max_concurrency,
            f"serverless endpoint: serverlessMaxConcurrency={cfg.serverless_max_concurrency}",
        )
    return list(needs.values())


def _quota_values(client: Any) -> dict[str, dict[str, Any]]:
    """SageMaker quotas by lower-cased name: the account's applied values over AWS's defaults."""
    found: dict[str, dict[str, Any]] = {}
    for operation in ("list_aws_default_service_quotas", "list_service_quotas"):  # applied values win
        for page in client.get_paginator(operation).paginate(ServiceCode="sagemaker"):
            for quota in page.get("Quotas", []):
                found[quota["QuotaName"].lower()] = quota
    return found


def check_quotas(client: Any, needs: list[Need], region: str) -> list[Result]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        quotas = _quota_values(client)
    except (ClientError, BotoCoreError) as error:
        detail = f"cannot read SageMaker quotas ({error}); the caller needs servicequotas:ListServiceQuotas and ListAWSDefaultServiceQuotas"
        return [Result(UNKNOWN, n.quota_name, detail, _manual(n, region)) for n in needs]
    results = []
    for need in needs:
        why = "; ".join(need.reasons)
        quota = quotas.get(need.quota_name.lower())
        if quota is None:
            results.append(
                Result(UNKNOWN, need.quota_name, f"need {need.needed} ({why}); no such quota listed in {region}", _manual(need, region))
            )
            continue
        have = int(quota.get("Value", 0))
        if have >= need.needed:
            results.append(Result(OK, need.quota_name, f"need {need.needed}, have {have} ({why})"))
        else:
            command = (
                f"aws service-quotas request-service-quota-increase --region {region} --service-code sagemaker "
                f"--quota-code {quota['QuotaCode']} --desired-value {need.needed}"
            )
            results.append(Result(REQUEST, need.quota_name, f"need {need.needed}, have {have} ({why})", command))
    return results


def _manual(need: Need, region: str) -> str:
    return f'Service Quotas console, {region}, Amazon SageMaker: "{need.quota_name}" must be at least {need.needed}'


def check_dataset(s3: Any, source: str) -> Result:
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(source)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        return Result(FAIL, f"dataset {source}", f"cannot list it: {code}", "check datasetSource in cdk.json and the bucket's policy")
    except BotoCoreError as error:
        return Result(FAIL, f"dataset {source}", f"cannot reach it: {error}", "check the network and datasetSource in cdk.json")
    if not listed.get("KeyCount", len(listed.get("Contents", []))):
        return Result(FAIL, f"dataset {source}", "the bucket answers but the prefix is empty", "check datasetSource in cdk.json")
    return Result(OK, f"dataset {source}", "lists (the Prepare job reads it with the same kind of request)")


def check_bootstrap(cloudformation: Any, account: str, region: str) -> Result:
    from botocore.exceptions import BotoCoreError, ClientError

    bootstrap = f"npx cdk bootstrap aws://{account}/{region}"
    try:
        (stack,) = cloudformation.describe_stacks(StackName=BOOTSTRAP_STACK)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if "does not exist" in message:
            return Result(FAIL, "CDK bootstrap", f"no {BOOTSTRAP_STACK} stack in {region}", bootstrap)
        return Result(UNKNOWN, "CDK bootstrap", f"cannot describe {BOOTSTRAP_STACK}: {message}", bootstrap)
    except BotoCoreError as error:
        return Result(UNKNOWN, "CDK bootstrap", f"cannot describe {BOOTSTRAP_STACK}: {error}", bootstrap)
    status = stack["StackStatus"]
    if not status.endswith("_COMPLETE") or "ROLLBACK" in status or "DELETE" in status:
        return Result(FAIL, "CDK bootstrap", f"{BOOTSTRAP_STACK} is {status}", bootstrap)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    version = outputs.get("BootstrapVersion")
    if version is not None and version.isdigit() and int(version) < MIN_BOOTSTRAP_VERSION:
        return Result(FAIL, "CDK bootstrap", f"{BOOTSTRAP_STACK} version {version} < {MIN_BOOTSTRAP_VERSION}", bootstrap)
    return Result(OK, "CDK bootstrap", f"{BOOTSTRAP_STACK} {status}, version {version or 'unknown'}")


def offline_list(cfg: AppConfig, region: str) -> str:
    lines = [
        f"No AWS credentials: nothing was checked. Before the first deploy and run in {region}, make sure of:",
        "SageMaker service quotas (Service Quotas console, Amazon SageMaker):",
    ]
    lines += [f"  - {n.quota_name}: at least {n.needed}  ({'; '.join(n.reasons)})" for n in quota_needs(cfg)]
    lines += [
        f"Dataset bucket: {cfg.dataset_source} can be listed by the account (the Prepare job lists and reads it).",
        f"CDK bootstrap: the {BOOTSTRAP_STACK} stack exists in {region} (npx cdk bootstrap aws://ACCOUNT/{region}).",
        "Batch transform is not used by this app: no transform quota is needed.",
        "Run `make preflight` again with credentials (AWS_PROFILE or the usual variables) to check them.",
    ]
    return "\n".join(lines)


def report(results: list[Result], account: str, region: str, prefix: str) -> str:
    lines = [f"Preflight for {prefix} in {region} (account {account})"]
    width = max(len(r.status) for r in results)
    lines += [f"  {r.status:<{width}}  {r.subject}: {r.detail}" for r in results]
    todo = [r for r in results if r.status != OK]
    if todo:
        lines.append("To do before the first run:")
        lines += [f"  - {r.subject}: {r.request}" for r in todo if r.request]
        if any("training job usage" in r.subject for r in todo):
            lines.append(
                "  - or need less: trainingInstanceCount=1, tuningMaxParallelJobs=1, or a CPU trainingInstanceType/tuningInstanceType "
                "(cdk.json); useSpot=false moves the need to the on-demand training quota"
            )
    else:
        lines.append("Nothing to request.")
    lines.append("Batch transform is not used by this app: no transform quota is needed.")
    return "\n".join(lines)


def run(cfg: AppConfig, region: str, session: Any) -> tuple[int, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    if session.get_credentials() is None:
        return 0, offline_list(cfg, region)
    try:
        account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as error:
        return 1, f"AWS credentials were found but do not work: {error}"
    results = check_quotas(session.client("service-quotas", region_name=region), quota_needs(cfg), region)
    results.append(check_dataset(session.client("s3", region_name=region), cfg.dataset_source))
    results.append(check_bootstrap(session.client("cloudformation", region_name=region), account, region))
    status = 0 if all(r.status == OK for r in results) else 1
    return status, report(results, account, region, cfg.name_prefix)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", help="region to check (default: cdk.json region)")
    parser.add_argument("--context", type=Path, default=ROOT / "cdk.json", help="cdk.json to read the configuration from")
    args = parser.parse_args(argv)
    try:
        context = json.loads(args.context.read_text())["context"]
        cfg = config_from_mapping(context)
    except (OSError, ValueError, KeyError, ConfigError) as error:
        print(f"cannot read the configuration from {args.context}: {error}", file=sys.stderr)
        return 2
    region = args.region or cfg.region
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    status, text = run(cfg, region, boto3.Session(region_name=region))
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())

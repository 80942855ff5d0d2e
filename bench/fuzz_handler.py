"""Property-based fuzz of the count Lambda's handler at scale: the hostile requests and properties of
local_mode/hostile_inputs.py (malformed photos, decompression bombs, hostile headers and JSON batches,
expected counts of every type) through the real lambda_handler, whose endpoint is the emulator serving a
scripted, always healthy model (local_mode/scripted_model.py; boto3 really calls it), so any 5xx is the
handler's fault.

    .venv/bin/python -m bench.fuzz_handler --examples 10000      # result goes into docs/serving.md
tests/serving/test_fuzz.py runs the same properties with a few hundred examples.
"""

from __future__ import annotations

import argparse
import json
import os

from count_api.settings import ApiSettings, Powertools, function_environment

from local_mode.endpoint_server import LOOPBACK_CREDENTIALS
from local_mode.hostile_inputs import fuzz
from local_mode.scripted_model import ScriptedEndpoint


def handler_environment(endpoint: ScriptedEndpoint) -> dict[str, str]:
    """The handler's environment: the function's defaults, one attempt per call, quiet logs, the emulator."""
    settings = ApiSettings(endpoint_name=endpoint.endpoint_name, invoke_max_attempts=1)
    powertools = Powertools(log_level="CRITICAL", outside_lambda=True)
    return {**function_environment(settings, powertools), **endpoint.client_environment(), **LOOPBACK_CREDENTIALS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the count Lambda handler (endpoint emulated on loopback).")
    parser.add_argument("--examples", type=int, default=10_000, help="generated requests (default 10000)")
    args = parser.parse_args(argv)

    with ScriptedEndpoint() as endpoint:
        os.environ.update(handler_environment(endpoint))
        result = fuzz(args.examples)
    print(json.dumps(result, indent=2))
    return 0 if not result["problems"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

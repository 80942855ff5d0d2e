"""`make serve`: serve a trained model locally behind the real Lambda handler (the local endpoint emulator
and the local API Gateway, two HTTP servers on loopback).

    python -m local_mode.local_serving --run runs/<id>        # model dir runs/<id>/train/model
    python -m local_mode.local_serving --model-dir DIR [--port 8080] [--api-key KEY]

Python API (used by the local runner and the tests): start_local_serving(model_dir, port=...) returns a
LocalServing with .api_url, .api_key, .endpoint_url and .close().
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from count_api.settings import ApiSettings, Powertools, api_environment, endpoint_name_for, powertools_environment

from local_mode.api_server import DEFAULT_CONCURRENCY, ApiServer, start_environments
from local_mode.endpoint_server import LOOPBACK_CREDENTIALS, EndpointServer, start_endpoint_server
from local_mode.paths import ROOT

# The function's defaults (count_api/settings.py), which cdk.json's values match.
DEFAULTS = ApiSettings(endpoint_name="")
# Locally: no CloudWatch metrics or X-Ray traces, warnings and errors only in the log.
LOCAL_POWERTOOLS = Powertools(metrics_namespace="InventoryMonitorLocal", log_level="WARNING", outside_lambda=True)


def deployed_endpoint_name(cdk_json: Path = ROOT / "cdk.json") -> str:
    """The endpoint name the deployed API calls: cdk.json's namePrefix + the function's suffix."""
    return endpoint_name_for(json.loads(cdk_json.read_text())["context"]["namePrefix"])


@dataclass
class LocalServing:
    """Both local servers; the handler's environment points at the endpoint server until close()."""

    endpoint: EndpointServer
    api: ApiServer
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def api_key(self) -> str:
        return self.api.api_key

    @property
    def endpoint_url(self) -> str:
        return self.endpoint.url

    @property
    def serving_path(self) -> str:
        """onnxruntime, torchscript or eager: what inference.load_model chose (training_code/serving_runtime.py)."""
        import serving_runtime  # importable once the endpoint server loaded the model through inference.py

        predictor = self.endpoint.state.predictor
        model = getattr(getattr(predictor, "model", None), "model", None)
        return serving_runtime.serving_path(model) if model is not None else "unknown"

    def close(self) -> None:
        self.api.close()
        self.endpoint.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalServing:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _set_env(values: dict[str, str], only_if_absent: dict[str, str]) -> dict[str, str | None]:
    saved: dict[str, str | None] = {}
    for name, value in values.items():
        saved[name] = os.environ.get(name)
        os.environ[name] = value
    for name, value in only_if_absent.items():
        if name not in os.environ:
            saved[name] = None
            os.environ[name] = value
    return saved


def handler_environment(settings: ApiSettings, endpoint: EndpointServer) -> tuple[dict[str, str], dict[str, str]]:
    """(always set, set only if absent): what the Lambda gets from the stack on AWS, pointed at the local endpoint."""
    always = {**api_environment(settings), **endpoint.client_environment()}
    return always, {**LOOPBACK_CREDENTIALS, **powertools_environment(LOCAL_POWERTOOLS)}


def start_local_serving(
    model_dir: str | Path,
    port: int = 0,
    api_key: str | None = None,
    *,
    settings: ApiSettings | None = None,
    host: str = "127.0.0.1",
    concurrency: int = DEFAULT_CONCURRENCY,
) -> LocalServing:
    """Start the endpoint server (ephemeral port) and the API server (`port`, 0 = ephemeral) in threads.

    `settings` are the function's (the local run passes cdk.json's, infra.config.api_settings); None: the
    function's defaults with the deployed endpoint name (cdk.json). `concurrency` Lambda execution environments
    (copies of the handler) serve that many requests at once."""
    if not 1 <= concurrency <= 64:
        raise ValueError(f"concurrency must be from 1 to 64, not {concurrency}")
    if settings is None:
        settings = ApiSettings(endpoint_name=deployed_endpoint_name())
    endpoint = start_endpoint_server(model_dir, settings.endpoint_name, host=host)
    try:
        always, if_absent = handler_environment(settings, endpoint)
        saved = _set_env(always, if_absent)
        # After the environment is set: Powertools reads it at import. One copy per execution environment.
        handlers = start_environments(concurrency)

        # With metrics disabled locally, Powertools warns on every request that it has none to publish.
        warnings.filterwarnings("ignore", message="No application metrics to publish")

        api = ApiServer(handlers, api_key=api_key, host=host, port=port)
    except BaseException:
        endpoint.close()
        raise
    return LocalServing(endpoint=endpoint, api=api, _saved_env=saved)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve a trained model locally: the count API on localhost.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a finished local run, e.g. runs/<id> (serves runs/<id>/train/model)")
    source.add_argument("--model-dir", type=Path, help="a model dir written by train.py (model.pth + model_meta.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="API port (0 = any free port; default 8080)")
    parser.add_argument("--api-key", default=None, help="API key to require (default: a random one, printed)")
    parser.add_argument(
        "--max-images", type=int, default=DEFAULTS.max_images_per_request, help="images per JSON request (cdk.json maxImagesPerRequest)"
    )
    parser.add_argument(
        "--review-threshold",
        type=float,
        default=DEFAULTS.review_confidence_threshold,
        help="confidence below which needs_review is true",
    )
    parser.add_argument(
        "--verify-thresholds",
        type=float,
        nargs=2,
        default=(DEFAULTS.verify_match_threshold, DEFAULTS.verify_mismatch_threshold),
        metavar=("MATCH", "MISMATCH"),
        help="bin verification: p_match >= MATCH is match, <= MISMATCH is mismatch (cdk.json verifyMatchThreshold, "
        f"verifyMismatchThreshold; default {DEFAULTS.verify_match_threshold} {DEFAULTS.verify_mismatch_threshold})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests served at once (Lambda environments; default {DEFAULT_CONCURRENCY})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    model_dir = args.model_dir if args.model_dir else args.run / "train" / "model"
    if not 1 <= args.concurrency <= 64:
        print(f"error: --concurrency must be from 1 to 64, not {args.concurrency}", file=sys.stderr)
        return 2
    match, mismatch = args.verify_thresholds
    if not 0.0 <= mismatch < match <= 1.0:
        print(f"error: --verify-thresholds {match} {mismatch}: need 0 <= MISMATCH < MATCH <= 1 (between them is review)", file=sys.stderr)
        return 2
    if not (model_dir / "model.pth").is_file():
        print(f"error: {model_dir} has no model.pth. Train first (make demo), then: make serve RUN=runs/<id>", file=sys.stderr)
        return 2
    try:
        endpoint_name = deployed_endpoint_name()
    except (OSError, KeyError, ValueError) as error:
        print(f"error: cannot read namePrefix (the endpoint's name) from cdk.json: {error!r}", file=sys.stderr)
        return 2
    settings = ApiSettings(
        endpoint_name=endpoint_name,
        max_images_per_request=args.max_images,
        review_confidence_threshold=args.review_threshold,
        verify_match_threshold=match,
        verify_mismatch_threshold=mismatch,
    )
    try:
        serving = start_local_serving(
            model_dir, port=args.port, api_key=args.api_key, settings=settings, host=args.host, concurrency=args.concurrency
        )
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            print(f"error: cannot listen on {args.host}:{args.port} ({error.strerror}): pick another --port, or --port 0", file=sys.stderr)
        else:
            print(f"error: cannot read the model in {model_dir}: {error}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, KeyError) as error:  # inference.model_fn refusing the model dir
        print(f"error: cannot load the model in {model_dir}: {error}. Train it again (make demo)", file=sys.stderr)
        return 2
    print(f"Page:       {serving.api_url}/   (open it in a browser and type the API key below)", flush=True)
    print(f"Count API:  {serving.api_url}/v1/count   (health: {serving.api_url}/v1/health)")
    print(f"API key:    {serving.api_key}")
    print(f"Endpoint:   {serving.endpoint_url} (SageMaker runtime API + /ping, /invocations; serving path: {serving.serving_path})")
    print(
        f'Try:        curl -s -H "x-api-key: {serving.api_key}" -H "Content-Type: image/jpeg" --data-binary @photo.jpg {serving.api_url}/v1/count'
    )
    # The README's curl lines use "${API_URL}v1/count", as on AWS (the stage URL ends with "/"): paste this first.
    print(f"Shell:      export API_URL={serving.api_url}/ API_KEY={serving.api_key}")
    print(f"Or:         python -m local_mode.client --url {serving.api_url} --api-key {serving.api_key} PHOTOS_OR_FOLDERS...")
    print("Ctrl-C stops both servers.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serving.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

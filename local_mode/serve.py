"""`make serve`: serve a trained model locally behind the real Lambda handler.

    python -m local_mode.serve --run runs/<id>        # model dir runs/<id>/train/model
    python -m local_mode.serve --model-dir DIR [--port 8080] [--api-key KEY]

Python API (used by the local runner and the tests): start_local_stack(model_dir, port=...) returns a
LocalStack with .api_url, .api_key, .endpoint_url and .close().
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from local_mode.api_server import DEFAULT_CONCURRENCY, ApiServer, start_environments
from local_mode.endpoint_server import EndpointServer, start_endpoint_server
from local_mode.paths import LAMBDA_SOURCE, add_lambda

DEFAULT_ENDPOINT_NAME = "invmon-count-endpoint"


@dataclass
class LocalStack:
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

    def __enter__(self) -> LocalStack:
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


def handler_environment(
    endpoint_url: str,
    endpoint_name: str,
    max_images: int = 8,
    review_threshold: float = 0.5,
    verify_thresholds: tuple[float, float] = (0.45, 0.15),
) -> tuple[dict[str, str], dict[str, str]]:
    """(always set, set only if absent): what the Lambda gets from the stack on AWS, pointed at localhost.
    verify_thresholds: (match, mismatch), cdk.json verifyMatchThreshold / verifyMismatchThreshold."""
    always = {
        "ENDPOINT_NAME": endpoint_name,
        "MAX_IMAGES_PER_REQUEST": str(max_images),
        "REVIEW_CONFIDENCE_THRESHOLD": str(review_threshold),
        "VERIFY_MATCH_THRESHOLD": str(verify_thresholds[0]),
        "VERIFY_MISMATCH_THRESHOLD": str(verify_thresholds[1]),
        # The handler's boto3 clients talk to the local endpoint server (runtime API and DescribeEndpoint).
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint_url,
        "AWS_ENDPOINT_URL_SAGEMAKER": endpoint_url,
    }
    # botocore signs every request: dummy credentials when the user has none (they never leave loopback).
    if_absent = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "POWERTOOLS_SERVICE_NAME": "count-api",
        "POWERTOOLS_METRICS_NAMESPACE": "InventoryMonitorLocal",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    return always, if_absent


def start_local_stack(
    model_dir: str | Path,
    port: int = 0,
    api_key: str | None = None,
    endpoint_name: str = DEFAULT_ENDPOINT_NAME,
    host: str = "127.0.0.1",
    max_images: int = 8,
    review_threshold: float = 0.5,
    concurrency: int = DEFAULT_CONCURRENCY,
    verify_thresholds: tuple[float, float] = (0.45, 0.15),
) -> LocalStack:
    """Start the endpoint server (ephemeral port) and the API server (`port`, 0 = ephemeral) in threads.

    `concurrency` Lambda execution environments (copies of the handler) serve that many requests at once."""
    if not 1 <= concurrency <= 64:
        raise ValueError(f"concurrency must be from 1 to 64, not {concurrency}")
    endpoint = start_endpoint_server(model_dir, endpoint_name, host=host)
    try:
        always, if_absent = handler_environment(endpoint.url, endpoint_name, max_images, review_threshold, verify_thresholds)
        saved = _set_env(always, if_absent)
        add_lambda()
        # After the environment is set: Powertools reads it at import. One copy per execution environment.
        handlers = start_environments(LAMBDA_SOURCE / "handler.py", concurrency)

        # With metrics disabled locally, Powertools warns on every request that it has none to publish.
        warnings.filterwarnings("ignore", message="No application metrics to publish")

        api = ApiServer(handlers, api_key=api_key, host=host, port=port)
    except BaseException:
        endpoint.close()
        raise
    return LocalStack(endpoint=endpoint, api=api, _saved_env=saved)


@contextmanager
def local_stack(model_dir: str | Path, **kwargs: object) -> Iterator[LocalStack]:
    stack = start_local_stack(model_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.close()


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve a trained model locally: the count API on localhost.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a finished local run, e.g. runs/<id> (serves runs/<id>/train/model)")
    source.add_argument("--model-dir", type=Path, help="a model dir written by train.py (model.pth + model_meta.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="API port (0 = any free port; default 8080)")
    parser.add_argument("--api-key", default=None, help="API key to require (default: a random one, printed)")
    parser.add_argument("--max-images", type=int, default=8, help="images per JSON request (cdk.json maxImagesPerRequest)")
    parser.add_argument("--review-threshold", type=float, default=0.5, help="confidence below which needs_review is true")
    parser.add_argument(
        "--verify-thresholds",
        type=float,
        nargs=2,
        default=(0.45, 0.15),
        metavar=("MATCH", "MISMATCH"),
        help="bin verification: p_match >= MATCH is match, <= MISMATCH is mismatch (cdk.json verifyMatchThreshold, "
        "verifyMismatchThreshold; default 0.45 0.15)",
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
        stack = start_local_stack(
            model_dir,
            port=args.port,
            api_key=args.api_key,
            host=args.host,
            max_images=args.max_images,
            review_threshold=args.review_threshold,
            concurrency=args.concurrency,
            verify_thresholds=tuple(args.verify_thresholds),
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
    print(f"Page:       {stack.api_url}/   (open it in a browser and type the API key below)", flush=True)
    print(f"Count API:  {stack.api_url}/v1/count   (health: {stack.api_url}/v1/health)")
    print(f"API key:    {stack.api_key}")
    print(f"Endpoint:   {stack.endpoint_url} (SageMaker runtime API + /ping, /invocations; serving path: {stack.serving_path})")
    print(
        f'Try:        curl -s -H "x-api-key: {stack.api_key}" -H "Content-Type: image/jpeg" --data-binary @photo.jpg {stack.api_url}/v1/count'
    )
    # The README's curl lines use "${API_URL}v1/count", as on AWS (the stage URL ends with "/"): paste this first.
    print(f"Shell:      export API_URL={stack.api_url}/ API_KEY={stack.api_key}")
    print(f"Or:         python -m local_mode.client --url {stack.api_url} --api-key {stack.api_key} PHOTOS_OR_FOLDERS...")
    print("Ctrl-C stops both servers.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Local serving over HTTP on loopback.

Fast tests: the API adapter (local_mode/api_server.py) in front of the real handler, with the endpoint
emulated at the HTTP level (local_mode/scripted_model.py). Slow tests: everything real — a model trained by
training_code/train.py on synthetic bins, served by local_mode/endpoint_server.py through inference.py,
behind the real handler and the API adapter; requests go over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from local_mode import client
from local_mode.api_server import ApiServer
from local_mode.endpoint_server import start_endpoint_server
from local_mode.local_serving import start_local_serving
from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.helpers import photo

ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE = ROOT / "training_code"


# --- the API adapter with the emulated endpoint (fast) -------------------------------------------------


@pytest.fixture
def api(endpoint: ScriptedEndpoint) -> Iterator[ApiServer]:
    from count_api import app as handler

    server = ApiServer(handler.lambda_handler, api_key="secret-key")
    yield server
    server.close()


def test_api_adapter_checks_the_key(api: ApiServer) -> None:
    for headers in ({}, {"x-api-key": "wrong"}):
        reply = requests.post(f"{api.url}/v1/count", data=photo(), headers={"Content-Type": "image/jpeg", **headers}, timeout=10)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"


def test_api_adapter_passes_binary_photos_through(api: ApiServer) -> None:
    reply = requests.post(
        f"{api.url}/v1/count", data=photo("PNG", shade=220), headers={"x-api-key": "secret-key", "Content-Type": "image/png"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["count"] == 5 and reply.headers["X-Model-Version"] == "fake-7"
    assert reply.json()["request_id"] == reply.headers["x-amzn-RequestId"]


def test_api_adapter_refuses_bodies_over_the_lambda_limit(api: ApiServer) -> None:
    reply = requests.post(
        f"{api.url}/v1/count",
        data=b"\xff" * (5 * 1024 * 1024),
        headers={"x-api-key": "secret-key", "Content-Type": "image/jpeg"},
        timeout=10,
    )
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "payload_too_large"


def test_client_prints_a_table(api: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_bytes(photo(shade=220))
    (tmp_path / "b.png").write_bytes(photo("PNG", shade=40))
    assert client.main(["--url", api.url, "--api-key", "secret-key", "--batch-size", "1", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["photo", "count", "confidence", "review"]
    assert lines[1].split()[1:] == ["5", "0.900"] and lines[2].split()[-1] == "yes"


def test_client_reports_api_errors(api: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    assert client.main(["--url", api.url, "--api-key", "secret-key", "--raw", str(tmp_path / "bad.jpg")]) == 1
    assert "HTTP 400 not_an_image" in capsys.readouterr().err


# --- everything real (slow) -------------------------------------------------------------------------------


# trained_model_dir (session): tests/serving/conftest.py, shared with the browser test.


@pytest.mark.slow
def test_endpoint_server_speaks_the_container_and_runtime_contracts(trained_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with start_endpoint_server(trained_model_dir, "local-ep") as server:
        assert requests.get(f"{server.url}/ping", timeout=10).status_code == 200
        reply = requests.post(f"{server.url}/invocations", data=photo(), headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert reply.status_code == 200 and reply.json()["predictions"][0]["count"] in (1, 2, 3, 4, 5)
        # a plain boto3 client, redirected by the environment variable, with dummy credentials
        for name, value in {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": server.url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
        }.items():
            monkeypatch.setenv(name, value)
        runtime = boto3.client("sagemaker-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
        reply = runtime.invoke_endpoint(EndpointName="local-ep", ContentType="image/png", Body=photo("PNG"))
        assert json.loads(reply["Body"].read())["model_version"] == "e2e-test"
        with pytest.raises(runtime.exceptions.ModelError) as raised:
            runtime.invoke_endpoint(EndpointName="local-ep", ContentType="application/x-npy", Body=b"\x93NUMPY broken")
        assert raised.value.response["OriginalStatusCode"] == 400
        with pytest.raises(runtime.exceptions.ClientError, match="not found"):
            runtime.invoke_endpoint(EndpointName="other-ep", ContentType="image/png", Body=photo("PNG"))


@pytest.mark.slow
def test_photo_to_count_over_http_end_to_end(trained_model_dir: Path) -> None:
    """POST a JPEG to the local API -> Lambda handler -> local endpoint -> the trained model -> a count."""
    with start_local_serving(trained_model_dir, port=0) as serving:
        headers = {"x-api-key": serving.api_key}
        reply = requests.post(f"{serving.api_url}/v1/count", data=photo(), headers={**headers, "Content-Type": "image/jpeg"}, timeout=60)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["count"] in (1, 2, 3, 4, 5) and body["model_version"] == "e2e-test"
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert body["needs_review"] == (body["confidence"] < 0.5)
        batch = {"images": [{"id": f"bin-{i}", "data": base64.b64encode(photo(shade=60 + 50 * i)).decode()} for i in range(3)]}
        reply = requests.post(f"{serving.api_url}/v1/count", json=batch, headers=headers, timeout=60)
        assert reply.status_code == 200 and [r["id"] for r in reply.json()["results"]] == ["bin-0", "bin-1", "bin-2"]
        health = requests.get(f"{serving.api_url}/v1/health", headers=headers, timeout=10)
        assert health.status_code == 200 and health.json()["endpoint"]["status"] == "InService"
    assert (
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME" not in os.environ or os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] != serving.endpoint_url
    )


@pytest.mark.slow
def test_make_serve_entry_point_prints_url_key_and_curl(trained_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1" / "train"
    run_dir.mkdir(parents=True)
    (run_dir / "model").symlink_to(trained_model_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "local_mode.local_serving", "--run", str(tmp_path / "runs" / "r1"), "--port", "0", "--api-key", "k-123"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        output = "".join(lines)
        assert "API key:    k-123" in output and 'curl -s -H "x-api-key: k-123"' in output, output + process.stderr.read()  # type: ignore[union-attr]
        url = output.split("Count API:  ", 1)[1].split()[0]
        # The try-it page's URL comes first, and it opens without the key.
        assert lines[0].startswith("Page:"), output
        page = requests.get(lines[0].split()[1], timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html") and "<title>" in page.text
        reply = requests.post(url, data=photo(), headers={"x-api-key": "k-123", "Content-Type": "image/jpeg"}, timeout=60)
        assert reply.status_code == 200 and reply.json()["count"] in (1, 2, 3, 4, 5)
        # The README's curl lines, as pasted after the export line `make serve` printed (README: "The counting API").
        export = next(line for line in lines if line.startswith("Shell:")).split("Shell:", 1)[1].strip()
        readme = (ROOT / "README.md").read_text().split("## The counting API", 1)[1]
        block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
        for name, shade in (("bin.jpg", 200), ("a.jpg", 90)):
            (tmp_path / name).write_bytes(photo(shade=shade))
        script = f"set -e\n{export}\n" + block.replace("curl -s ", "curl -s -w '\\n' ")
        result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        replies = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert replies[0]["count"] in (1, 2, 3, 4, 5) and replies[1]["results"][0]["id"] == "bin-1"
        assert replies[2]["serving"] is True and len(replies) == 3
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_serve_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local_mode.local_serving", "--run", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "has no model.pth" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_a_broken_model_dir_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "model.pth").write_bytes(b"not a state dict")
    (tmp_path / "model_meta.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "local_mode.local_serving", "--model-dir", str(tmp_path), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "cannot load the model" in result.stderr and "Traceback" not in result.stderr, result.stderr

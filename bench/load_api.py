"""The local API under load: throughput, latency percentiles and status histogram (issue 15, item 2).

    .venv/bin/python -m bench.load_api [--arch mobilenet_v3_small] [--model-dir DIR] [--seconds 15] [--clients 4,16]

Starts the whole local stack as `make serve` does (`python -m local_mode.local_serving`: the endpoint server
through training_code/inference.py, the real Lambda handler in its environments behind the local API
Gateway) on 127.0.0.1 and drives it from `clients` threads of this process, each opening a new connection per request (the harsher
case). Without --model-dir it trains a throwaway model of --arch first (train.py, 1 epoch on 40 synthetic
bins at 224 px: the weights do not matter for speed).

Workloads: `good` = one 640×480 JPEG per request (the ≥ 50 requests/s target); `mixed` = 60 % good photos
and 40 % hostile (wrong key, not an image, empty body, bad Content-Length, wrong method, oversized header).
Every reply must be exactly one well-formed HTTP response with a JSON body and the expected status;
`bad_replies` counts the others (dropped connections, non-JSON, wrong status). The server is
`python -m local_mode.local_serving` in its own process (the clients do not share its interpreter); memory is the
resident set of that process plus its Lambda environments, after start-up and after the last load level.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common

KEY = "bench-key"


def _photo(seed: int) -> bytes:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", (640, 480), (rng.randrange(120, 220),) * 3)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(1, 6)):
        x, y = rng.randrange(0, 560), rng.randrange(0, 400)
        draw.rectangle((x, y, x + 80, y + 80), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _request(method: str, body: bytes, *headers: str, key: str = KEY, content_type: str = "image/jpeg") -> bytes:
    lines = [f"{method} /v1/count HTTP/1.1", "Host: 127.0.0.1", f"x-api-key: {key}", f"Content-Type: {content_type}", "Connection: close"]
    lines += headers
    if not any(h.lower().startswith("content-length") for h in headers) and method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def workloads() -> dict[str, list[tuple[bytes, int]]]:
    photos = [_photo(seed) for seed in range(6)]
    good = [(_request("POST", p), 200) for p in photos]
    hostile = [
        (_request("POST", photos[0], key="wrong"), 403),
        (_request("POST", photos[0], key="ключ"), 403),
        (_request("POST", b"this is not a photo"), 400),
        (_request("POST", b"", "Content-Length: 0"), 400),
        (_request("POST", photos[0], "Content-Length: abc"), 400),
        (_request("GET", b""), 405),
        (_request("POST", b"", "X-Big: " + "a" * 20_000), 431),
        (_request("DELETE", b""), 405),
    ]
    mixed = good * 2 + hostile[:8]  # 12 good : 8 hostile
    return {"good": good, "mixed": mixed}


def one_request(address: tuple[str, int], raw: bytes) -> tuple[int | str, bool, float]:
    """(status or failure name, body is one JSON document, seconds)."""
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=30) as sock:
            sock.sendall(raw)
            response = http.client.HTTPResponse(sock, method="GET" if raw.startswith(b"GET") else "POST")
            response.begin()
            body = response.read()
            is_json = response.getheader("Content-Type") == "application/json"
            try:
                json.loads(body)
            except ValueError:
                is_json = False
            return response.status, is_json, time.perf_counter() - started
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__, False, time.perf_counter() - started


def drive(address: tuple[str, int], requests: list[tuple[bytes, int]], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bad = 0
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        nonlocal bad
        n = index
        while time.perf_counter() < stop:
            raw, expected = requests[n % len(requests)]
            n += clients
            status, is_json, elapsed = one_request(address, raw)
            with lock:
                latencies.append(elapsed)
                statuses[str(status)] += 1
                if status != expected or not is_json:
                    bad += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "requests": len(ordered),
        "throughput_rps": len(ordered) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "bad_replies": bad,
        "statuses": dict(sorted(statuses.items())),
    }


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found + [g for c in found for g in _children(c)]


def rss_mb(root: int) -> float:
    """Resident memory of process `root` and its children (the server and its Lambda environments), MB."""
    total = 0
    for pid in [root, *_children(root)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def train_throwaway(arch: str, image_size: int, work: Path) -> Path:
    code = common.ROOT / "training_code"

    def run(*args: str) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        result = subprocess.run([sys.executable, *args], cwd=code, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            raise common.BenchError(f"{args[0]} failed:\n{result.stderr[-1500:]}")

    run("synthetic_bins.py", "--output", str(work / "src"), "--count", "40", "--seed", "3")
    run("prep.py", "--source", str(work / "src"), "--output", str(work / "prep"), "--workers", "1")
    run(
        "train.py", "--train", str(work / "prep" / "train"), "--validation", str(work / "prep" / "validation"), "--model", arch,
        "--epochs", "1", "--batch-size", "16", "--image-size", str(image_size), "--augment", "off", "--model-dir", str(work / "model"),
        "--output-data-dir", str(work / "output"), "--checkpoint-dir", str(work / "ckpt"), "--model-version", f"bench-{arch}",
    )  # fmt: skip
    return work / "model"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Drive the local API with concurrent clients; report throughput and latency.")
    parser.add_argument("--arch", default="mobilenet_v3_small", help="architecture of the throwaway model (no --model-dir)")
    parser.add_argument("--image-size", type=int, default=224, help="the throwaway model's --image-size (the default recipe: 192)")
    parser.add_argument("--model-dir", type=Path, help="serve this model dir instead of training a throwaway one")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each load level")
    parser.add_argument("--clients", default="4,16", help="comma-separated client counts")
    parser.add_argument("--concurrency", type=int, default=4, help="Lambda environments of the local API")
    parser.add_argument(
        "--serving-path",
        choices=("auto", "onnxruntime", "torchscript", "eager"),
        default="auto",
        help="the endpoint's CPU path (INVMON_SERVING_PATH)",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per level")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        common.quick_results()
        args.seconds = 3.0
    try:
        clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        print(f"error: --clients must be comma-separated integers, not {args.clients!r}", file=sys.stderr)
        return 2
    if args.seconds <= 0 or any(c < 1 or c > 64 for c in clients):
        print("error: --seconds must be positive and each client count from 1 to 64", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="load-api-") as scratch:
        try:
            model_dir = args.model_dir or train_throwaway(args.arch, args.image_size, Path(scratch))
        except common.BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        meta = json.loads((model_dir / "model_meta.json").read_text())
        # `make serve` in its own process, as a user runs it: the clients here do not share its interpreter.
        env = {**os.environ, "INVMON_SERVING_PATH": args.serving_path, "POWERTOOLS_LOG_LEVEL": "ERROR"}  # hostile requests log each
        command = [sys.executable, "-m", "local_mode.local_serving", "--model-dir", str(model_dir), "--port", "0", "--api-key", KEY]
        server = subprocess.Popen(
            [*command, "--concurrency", str(args.concurrency)], cwd=common.ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            printed = []
            for line in server.stdout:  # type: ignore[union-attr]
                printed.append(line)
                if line.startswith("Ctrl-C"):
                    break
            output = "".join(printed)
            if "Count API:" not in output:
                print(f"error: the server did not start:\n{output[-2000:]}", file=sys.stderr)
                return 1
            host, port = output.split("Count API:", 1)[1].split()[0].removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
            serving = output.split("serving path: ", 1)[1].split(")", 1)[0] if "serving path: " in output else "?"
            address = (host, int(port))
            loads = workloads()
            drive(address, loads["good"], args.concurrency, 3.0)  # warm-up: each environment imports botocore on its first call
            memory_started = rss_mb(server.pid)
            for workload, count in [("good", 4), *(("mixed", c) for c in clients)]:
                row = {
                    "model": meta["architecture"],
                    "serving_path": serving,
                    "workload": workload,
                    "clients": count,
                    **drive(address, loads[workload], count, args.seconds),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            memory_after = rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    extra = {
        "concurrency": args.concurrency,
        "seconds_per_level": args.seconds,
        "memory_mb": {
            "after_start": round(memory_started, 1),
            "after_load": round(memory_after, 1),
        },
        "load_avg_1min_end": os.getloadavg()[0],
    }
    for row in rows:
        row["statuses"] = " ".join(f"{k}:{v}" for k, v in row["statuses"].items())
    common.print_table(rows, COLUMNS)
    print(f"memory (server + environments): {extra['memory_mb']}")
    if args.model_dir:  # named after the model served, not the throwaway flags (which it ignores)
        name = f"load_api_{meta['architecture']}_{meta['image_size']}_{meta.get('tta', 'none')}_{args.serving_path}"
    elif args.serving_path == "auto" and args.arch == "mobilenet_v3_small":
        name = "load_api"
    else:
        name = f"load_api_{args.arch}{'' if args.image_size == 224 else f'_{args.image_size}'}_{args.serving_path}"
    path = common.write_result(name, common.command_line("bench.load_api", argv), rows, extra)
    print(f"wrote {common.display(path)}")
    return 1 if any(row["bad_replies"] for row in rows) else 0


COLUMNS = [
    "model",
    "serving_path",
    "workload",
    "clients",
    "requests",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "bad_replies",
    "statuses",
]

if __name__ == "__main__":
    sys.exit(main())

"""count: POST test photos through the local API (HTTP, with the API key) and print predicted vs. true counts.

The photos are the original JPEGs (from the source folder) of test-split ids, spread over the classes,
so the request goes through the whole serving path: API key check, Lambda preprocessing, endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from local_mode.runner import RunContext, StepFailed, write_json_atomic
from local_mode.steps.common import training_module

TIMEOUT_SECONDS = 30


def pick_test_photos(prepared: Path, source: Path, how_many: int) -> list[tuple[str, int, Path]]:
    """(id, true count, photo path), round-robin over the classes so each count appears."""
    dataset = training_module("dataset")
    split = dataset.load_split(prepared / "test")
    by_class: dict[int, list[str]] = {}
    for image_id, target in zip(split.ids, split.targets.tolist(), strict=True):
        by_class.setdefault(split.classes[target], []).append(image_id)
    picked: list[tuple[str, int, Path]] = []
    while len(picked) < how_many and any(by_class.values()):
        for count in sorted(by_class):
            if by_class[count] and len(picked) < how_many:
                image_id = by_class[count].pop(0)
                photo = source / "bin-images" / f"{image_id}.jpg"
                if photo.is_file():
                    picked.append((image_id, count, photo))
    return picked


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"  {'photo':<24} {'true':>4} {'predicted':>9} {'confidence':>10}", "  " + "-" * 55]
    for row in rows:
        mark = "ok" if row["predicted"] == row["true"] else "x"
        review = "  (needs review)" if row["needs_review"] else ""
        lines.append(f"  {row['id']:<24} {row['true']:>4} {row['predicted']:>9} {row['confidence']:>10.2f}  {mark}{review}")
    right = sum(r["predicted"] == r["true"] for r in rows)
    lines.append(f"  {right} of {len(rows)} counted right")
    return lines


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    serve = ctx.result_of("serve")
    if not serve.get("api_url"):
        ctx.log("Nothing is served (see the gate), so there is nothing to count.")
        return {"rows": [], "correct": 0, "posted": 0}
    source = Path(ctx.result_of("prepare")["source"])
    photos = pick_test_photos(ctx.step_dir("prepare"), source, ctx.options["count_images"])
    if not photos:
        raise StepFailed(f"no test photo found under {source / 'bin-images'} for the test split's ids")
    rows = []
    with requests.Session() as session:
        for image_id, true_count, photo in photos:
            try:
                reply = session.post(
                    serve["count_url"],
                    data=photo.read_bytes(),
                    headers={"x-api-key": serve["api_key"], "Content-Type": "image/jpeg", "Accept": "application/json"},
                    timeout=TIMEOUT_SECONDS,
                )
            except requests.RequestException as error:
                raise StepFailed(f"POST {serve['count_url']} failed ({error})") from None
            if reply.status_code != 200:
                raise StepFailed(f"POST {serve['count_url']} with {photo.name} answered {reply.status_code}: {reply.text[:300]}")
            body = reply.json()
            rows.append(
                {
                    "id": image_id,
                    "true": true_count,
                    "predicted": int(body["count"]),
                    "confidence": float(body["confidence"]),
                    "needs_review": bool(body.get("needs_review")),
                    "model_version": body.get("model_version"),
                }
            )
    for line in table(rows):
        ctx.log(line)
    correct = sum(r["predicted"] == r["true"] for r in rows)
    write_json_atomic(step_dir / "predictions.json", rows)
    return {"posted": len(rows), "correct": correct, "predictions": str(step_dir / "predictions.json")}

"""count: POST test photos through the local API (HTTP, with the API key, by local_mode/client.py) and print
predicted vs. true counts.

The photos are the original JPEGs (from the source folder) of test-split ids, spread over the classes,
so the request goes through the whole serving path: API key check, Lambda preprocessing, endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from local_mode.client import ClientError, count_photos
from local_mode.runner import RunContext, StepFailed, write_json_atomic

TIMEOUT_SECONDS = 30


def pick_test_photos(prepared: Path, source: Path, how_many: int) -> list[tuple[str, int, Path]]:
    """(id, true count, photo path), round-robin over the classes so each count appears."""
    import dataset  # training_code/dataset.py imports torch: only when this step runs

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
    try:
        # One photo per request, as image/jpeg: the path a floor camera takes.
        replies = list(
            count_photos(serve["api_url"], serve["api_key"], [photo for _, _, photo in photos], raw=True, timeout=TIMEOUT_SECONDS)
        )
    except ClientError as error:
        raise StepFailed(f"POST {serve['count_url']} failed: {error}") from None
    rows = [
        {
            "id": image_id,
            "true": true_count,
            "predicted": int(reply["count"]),
            "confidence": float(reply["confidence"]),
            "needs_review": bool(reply.get("needs_review")),
            "model_version": reply.get("model_version"),
        }
        for (image_id, true_count, _), reply in zip(photos, replies, strict=True)
    ]
    for line in table(rows):
        ctx.log(line)
    correct = sum(r["predicted"] == r["true"] for r in rows)
    write_json_atomic(step_dir / "predictions.json", rows)
    return {"posted": len(rows), "correct": correct, "predictions": str(step_dir / "predictions.json")}

"""Bulk verification, step 3 of 3: join Batch Transform's replies with the records into a report.

    python verify_report.py --predictions transform-out/ --records prepared/records/ --output report/ \
        [--batches prepared/batches/ | --source s3://bucket/prefix/] [--match-threshold 0.4 --mismatch-threshold 0.1]

--predictions holds one reply per batch file, named <batch>.out as Batch Transform writes them, each the
JSON inference.py's output_fn returns ({"predictions": [{count, confidence, probabilities}], "model_version",
"classes"}). --records is verify_prepare.py's records folder (records.jsonl, manifest.jsonl).

Writes OUTPUT/results.csv (bin_id, expected, predicted, p_match, verdict, error, detail: every input row
exactly once, in input order), OUTPUT/summary.json (counts by verdict, mismatch rate, rows with errors
by reason) and OUTPUT/report.html (one file, nothing external: the summary, a histogram of p_match as inline
SVG, and the most suspicious bins with inline JPEG thumbnails read from --batches or --source).

verdict is match | mismatch | review (verification.py's rule) for a row that could be verified, and
"error" for a row that could not (its error column says why: a photo or record problem from the prepare
step, or prediction_missing / prediction_unreadable when a batch's reply is absent or malformed). Streaming:
one batch reply in memory at a time, plus the --top most suspicious rows.
"""

from __future__ import annotations

import argparse
import base64
import csv
import heapq
import html
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import verification

PROCESSING_PREDICTIONS = "/opt/ml/processing/input/predictions"
PROCESSING_RECORDS = "/opt/ml/processing/input/records"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
ERROR = "error"
PREDICTION_MISSING = "prediction_missing"
PREDICTION_UNREADABLE = "prediction_unreadable"
COLUMNS = ("bin_id", "expected", "predicted", "p_match", "verdict", "error", "detail")
HISTOGRAM_BINS = 20
DEFAULT_TOP = 24
THUMBNAIL = 112


class ReportError(Exception):
    """A problem with the arguments or the records folder itself; printed without a traceback."""


def _records(records_dir: Path) -> Iterator[dict[str, Any]]:
    path = records_dir / "records.jsonl"
    if not path.is_file():
        raise ReportError(f"{path} is missing: --records must be verify_prepare.py's records folder")
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise ReportError(f"{path} line {number} is not JSON: run verify_prepare.py again") from None


def _manifest(records_dir: Path) -> dict[str, int]:
    """batch name -> number of photos in it (one small line per batch)."""
    path = records_dir / "manifest.jsonl"
    if not path.is_file():
        raise ReportError(f"{path} is missing: --records must be verify_prepare.py's records folder")
    with open(path) as handle:
        return {entry["batch"]: len(entry["bin_ids"]) for entry in map(json.loads, handle)}


def load_reply(predictions_dir: Path, batch: str, expected_rows: int) -> tuple[list[dict[str, Any]] | None, str, str, dict[str, Any]]:
    """-> (predictions, "", "", reply metadata) or (None, reason, detail, {})."""
    path = predictions_dir / f"{batch}.out"
    if not path.is_file():
        return None, PREDICTION_MISSING, f"no {batch}.out in the transform output", {}
    try:
        reply = json.loads(path.read_bytes())
        predictions = reply["predictions"]
        if not isinstance(predictions, list) or len(predictions) != expected_rows:
            raise ValueError(f"{len(predictions) if isinstance(predictions, list) else 'no'} predictions for {expected_rows} photos")
        for p in predictions:
            if not isinstance(p.get("probabilities"), dict) or "count" not in p:
                raise ValueError("a prediction without count/probabilities")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, PREDICTION_UNREADABLE, f"{batch}.out: {error}", {}
    return predictions, "", "", {"model_version": reply.get("model_version"), "classes": reply.get("classes")}


class Thumbnails:
    """JPEG data URIs for a few bins: from the batch files (224x224, already preprocessed) or the source photos."""

    def __init__(self, batches: str | None, source: str | None) -> None:
        self.batches = Path(batches) if batches else None
        self.source = None
        if source and not self.batches:
            from prep import PrepError, open_source

            try:
                self.source = open_source(source, workers=4, retries=3)
            except PrepError as error:
                print(f"warning: no thumbnails ({error})", file=sys.stderr)

    def get(self, bin_id: str, batch: str | None, index: int | None) -> str | None:
        from PIL import Image

        try:
            if self.batches is not None and batch is not None and index is not None:
                import numpy as np

                image = Image.fromarray(np.array(np.load(self.batches / batch, mmap_mode="r")[index]))
            elif self.source is not None:
                data = self.source.read(f"bin-images/{bin_id}.jpg")
                if data is None:
                    return None
                image = Image.open(io.BytesIO(data)).convert("RGB")
            else:
                return None
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
            return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        except Exception as error:  # a thumbnail is decoration: never fail the report for one
            print(f"warning: no thumbnail for {bin_id} ({error})", file=sys.stderr)
            return None


def report(
    predictions: str | Path,
    records: str | Path,
    output: str | Path,
    match_threshold: float = verification.DEFAULT_MATCH_THRESHOLD,
    mismatch_threshold: float = verification.DEFAULT_MISMATCH_THRESHOLD,
    batches: str | None = None,
    source: str | None = None,
    top: int = DEFAULT_TOP,
) -> dict[str, Any]:
    try:
        verification.check_thresholds(match_threshold, mismatch_threshold)
    except verification.VerificationError as error:
        raise ReportError(f"--{error.field.replace('_', '-')}: {error.message}") from None
    predictions_dir, records_dir, output = Path(predictions), Path(records), Path(output)
    if not predictions_dir.is_dir():
        raise ReportError(f"--predictions {predictions_dir} is not a folder: give the transform job's output")
    manifest = _manifest(records_dir)
    output.mkdir(parents=True, exist_ok=True)
    verdicts: Counter[str] = Counter({v: 0 for v in (*verification.VERDICTS, ERROR)})
    errors: Counter[str] = Counter()
    histogram = {v: [0] * HISTOGRAM_BINS for v in verification.VERDICTS}
    outside_classes = 0
    suspicious: list[tuple[float, int, dict[str, Any]]] = []  # max-heap on p_match (negated): the `top` lowest
    meta: dict[str, Any] = {}
    current: tuple[str | None, list[dict[str, Any]] | None, str, str] = (None, None, "", "")
    rows = 0
    with open(output / "results.csv.tmp", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for record in _records(records_dir):
            rows += 1
            batch, index = record.get("batch"), record.get("index")
            prediction = None
            error, detail = record.get("error"), record.get("detail") or ""
            if batch is not None:
                if current[0] != batch:
                    loaded, reason, why, reply_meta = load_reply(predictions_dir, batch, manifest.get(batch, -1))
                    current = (batch, loaded, reason, why)
                    meta = meta or {k: v for k, v in reply_meta.items() if v is not None}
                _, loaded, reason, why = current
                if loaded is None:
                    error, detail = error or reason, detail if record.get("error") else why
                else:
                    prediction = loaded[index]
            predicted = prediction.get("count") if prediction else None
            p_match: float | None = None
            if error:
                verdict = ERROR
                errors[error] += 1
            else:
                result = verification.verify(prediction["probabilities"], record["expected"], match_threshold, mismatch_threshold)
                verdict, p_match = result["verdict"], result["p_match"]
                if p_match is None:
                    outside_classes += 1
                    detail = result["reason"]
                else:
                    histogram[verdict][min(HISTOGRAM_BINS - 1, int(p_match * HISTOGRAM_BINS))] += 1
                    item = {"bin_id": record["bin_id"], "expected": record["expected"], "predicted": predicted, "p_match": p_match}
                    item.update(verdict=verdict, batch=batch, index=index)
                    heapq.heappush(suspicious, (-p_match, -rows, item))
                    if len(suspicious) > top:
                        heapq.heappop(suspicious)
            verdicts[verdict] += 1
            writer.writerow([record["bin_id"], record.get("expected"), predicted, p_match, verdict, error or "", detail])
    os.replace(output / "results.csv.tmp", output / "results.csv")
    verified = sum(verdicts[v] for v in verification.VERDICTS)
    summary = {
        "rows": rows,
        "verdicts": dict(verdicts),
        "verified": verified,
        "mismatch_rate": round(verdicts[verification.MISMATCH] / verified, 4) if verified else None,
        "review_outside_classes": outside_classes,
        "rows_with_errors": sum(errors.values()),
        "errors": dict(sorted(errors.items())),
        "thresholds": {"match_threshold": match_threshold, "mismatch_threshold": mismatch_threshold},
        **meta,
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    ranked = [item for _, _, item in sorted(suspicious, key=lambda s: (-s[0], -s[1]))]
    thumbnails = Thumbnails(batches, source)
    for item in ranked:
        item["thumbnail"] = thumbnails.get(item["bin_id"], item.pop("batch"), item.pop("index"))
    (output / "report.html").write_text(render_html(summary, histogram, ranked))
    return summary


COLOURS = {"match": "#2e7d32", "review": "#f9a825", "mismatch": "#c62828"}


def histogram_svg(histogram: dict[str, list[int]], match_threshold: float, mismatch_threshold: float) -> str:
    """A stacked bar chart of p_match by verdict, with the two thresholds marked; plain SVG, no library."""
    width, height, left, bottom, top_pad = 640, 260, 48, 36, 12
    plot_w, plot_h = width - left - 12, height - bottom - top_pad
    totals = [sum(histogram[v][i] for v in histogram) for i in range(HISTOGRAM_BINS)]
    peak = max(totals) or 1
    bar_w = plot_w / HISTOGRAM_BINS
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="p_match histogram">']
    for i in range(HISTOGRAM_BINS):
        y = top_pad + plot_h
        for verdict in ("match", "review", "mismatch"):
            h = histogram[verdict][i] / peak * plot_h
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{COLOURS[verdict]}">'
                    f"<title>{verdict}: {histogram[verdict][i]} rows, p_match {i / HISTOGRAM_BINS:.2f}-{(i + 1) / HISTOGRAM_BINS:.2f}</title></rect>"
                )
    for value, label in ((mismatch_threshold, "mismatch"), (match_threshold, "match")):
        x = left + value * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{top_pad}" x2="{x:.1f}" y2="{top_pad + plot_h}" stroke="#333" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x + 3:.1f}" y="{top_pad + 10}" font-size="11">{label} {value}</text>')
    parts.append(f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" stroke="#333"/>')
    for tick in range(0, 11, 2):
        x = left + tick / 10 * plot_w
        parts.append(f'<text x="{x:.1f}" y="{top_pad + plot_h + 14}" font-size="11" text-anchor="middle">{tick / 10:.1f}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="12" text-anchor="middle">p_match</text>')
    parts.append(f'<text x="4" y="{top_pad + 10}" font-size="11">{peak} rows</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(summary: dict[str, Any], histogram: dict[str, list[int]], ranked: list[dict[str, Any]]) -> str:
    esc = html.escape
    thresholds = summary["thresholds"]
    verdict_rows = "".join(f"<tr><td>{esc(v)}</td><td>{n}</td></tr>" for v, n in summary["verdicts"].items())
    error_rows = (
        "".join(f"<tr><td>{esc(r)}</td><td>{n}</td></tr>" for r, n in summary["errors"].items()) or "<tr><td colspan=2>none</td></tr>"
    )
    cards = []
    for item in ranked:
        image = (
            f'<img src="{item["thumbnail"]}" alt="{esc(item["bin_id"])}">'
            if item.get("thumbnail")
            else "<div class=noimg>no thumbnail</div>"
        )
        cards.append(
            f'<figure class="{esc(item["verdict"])}">{image}<figcaption><b>{esc(str(item["bin_id"]))}</b><br>record {item["expected"]}, '
            f"model {item['predicted']}<br>p_match {item['p_match']:.3f} ({esc(item['verdict'])})</figcaption></figure>"
        )
    mismatch_rate = "n/a" if summary["mismatch_rate"] is None else f"{summary['mismatch_rate']:.1%}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bin verification report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0 2em 1em 0; display: inline-table; vertical-align: top; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
figure {{ display: inline-block; margin: 4px; padding: 4px; width: 130px; font-size: 12px; border: 2px solid #ccc; }}
figure.mismatch {{ border-color: {COLOURS["mismatch"]}; }} figure.review {{ border-color: {COLOURS["review"]}; }}
figure img {{ width: {THUMBNAIL}px; height: {THUMBNAIL}px; object-fit: contain; }}
.noimg {{ width: {THUMBNAIL}px; height: {THUMBNAIL}px; background: #eee; }}
</style></head><body>
<h1>Bin verification report</h1>
<p>{summary["rows"]} rows; {summary["verified"]} verified; mismatch rate {mismatch_rate} of verified rows;
{summary["rows_with_errors"]} rows could not be verified. Model {esc(str(summary.get("model_version", "?")))}, classes
{esc(str(summary.get("classes", "?")))}. Thresholds: match if p_match &ge; {thresholds["match_threshold"]}, mismatch if
p_match &le; {thresholds["mismatch_threshold"]}, review between; a record outside the model's classes is review
({summary["review_outside_classes"]} rows).</p>
<table><tr><th>verdict</th><th>rows</th></tr>{verdict_rows}</table>
<table><tr><th>error</th><th>rows</th></tr>{error_rows}</table>
<h2>p_match of verified rows</h2>
{histogram_svg(histogram, thresholds["match_threshold"], thresholds["mismatch_threshold"])}
<h2>Most suspicious bins (lowest p_match first)</h2>
{"".join(cards) or "<p>none</p>"}
<p>Every row, with its error or verdict: results.csv next to this file.</p>
</body></html>
"""


def get_args_parser() -> argparse.ArgumentParser:
    on_processing = Path("/opt/ml/processing").is_dir()
    parser = argparse.ArgumentParser(
        description="Join Batch Transform replies with the records into results.csv, summary.json, report.html."
    )
    for name, default, help_text in (
        ("--predictions", PROCESSING_PREDICTIONS, "the transform output: <batch>.out files"),
        ("--records", PROCESSING_RECORDS, "verify_prepare.py's records folder"),
        ("--output", PROCESSING_OUTPUT, "report folder"),
    ):
        parser.add_argument(name, default=default if on_processing else None, required=not on_processing, help=help_text)
    parser.add_argument("--match-threshold", type=float, default=verification.DEFAULT_MATCH_THRESHOLD)
    parser.add_argument("--mismatch-threshold", type=float, default=verification.DEFAULT_MISMATCH_THRESHOLD)
    parser.add_argument("--batches", help="verify_prepare.py's batch files (thumbnails); else --source")
    parser.add_argument("--source", help="the photos' s3:// prefix or folder, for thumbnails of the most suspicious bins")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"suspicious bins shown in report.html (default {DEFAULT_TOP})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        summary = report(
            args.predictions,
            args.records,
            args.output,
            args.match_threshold,
            args.mismatch_threshold,
            args.batches,
            args.source,
            max(0, args.top),
        )
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``serenesense data``: synthesise, prepare and inspect data sets.

The library modules (numpy, soundfile, and torch when resampling) are imported
inside the commands, so ``serenesense --help`` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from serenesense_cli.cli._bounds import within
from serenesense_cli.cli._output import (
    OutputFormat,
    emit_csv,
    emit_json,
    emit_result_path,
    emit_table,
    log,
    progress_bars,
    warn,
)
from serenesense_cli.limits import COMMANDS, SEED

app = typer.Typer(help="Prepare and inspect data sets.", no_args_is_help=True)

_SPLIT_ORDER = ("train", "val", "test")
_MAX_LISTED = 20
"""Skipped files listed one per line on stderr; the rest are in skipped.csv."""


class SourceKind(str, Enum):
    """How to read a source (mirrors serenesense_cli.data.sources.SourceFormat)."""

    auto = "auto"
    mad = "mad"
    folder = "folder"
    manifest = "manifest"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output: a table, JSON or CSV on stdout."),
]
OutOption = Annotated[
    Path,
    typer.Option("--out", "-o", help="Folder to write.", file_okay=False, show_default=False),
]


def _split_rows(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (one per class plus a total) with clips and hours per split."""
    splits = [s for s in _SPLIT_ORDER if s in summary["splits"]]
    splits += [s for s in summary["splits"] if s not in splits]
    columns = ["class"]
    for split in [*splits, "total"]:
        columns += [f"{split}_clips", f"{split}_hours"]
    rows = []
    for label in summary["classes"]:
        row: dict[str, Any] = {"class": label}
        clips = hours = 0.0
        for split in splits:
            cell = summary["splits"][split]["classes"].get(label, {"clips": 0, "hours": 0.0})
            row[f"{split}_clips"] = cell["clips"]
            row[f"{split}_hours"] = round(cell["hours"], 4)
            clips += cell["clips"]
            hours += cell["hours"]
        row["total_clips"] = int(clips)
        row["total_hours"] = round(hours, 4)
        rows.append(row)
    total: dict[str, Any] = {"class": "total"}
    for split in splits:
        total[f"{split}_clips"] = summary["splits"][split]["clips"]
        total[f"{split}_hours"] = round(summary["splits"][split]["hours"], 4)
    total["total_clips"] = summary["clips"]
    total["total_hours"] = round(summary["hours"], 4)
    rows.append(total)
    return rows, columns


def _render_summary(summary: dict[str, Any], output: OutputFormat, *, title: str) -> None:
    rows, columns = _split_rows(summary)
    if output is OutputFormat.csv:
        emit_csv(rows, columns)
        return
    # One "clips (hours)" cell per split keeps the table narrow enough for 80 columns.
    splits = [c[: -len("_clips")] for c in columns if c.endswith("_clips")]
    cells = [
        {"class": row["class"]}
        | {s: f"{row[f'{s}_clips']:,} ({row[f'{s}_hours']:.3f} h)" for s in splits}
        for row in rows
    ]
    groups = ", ".join(f"{s} {v['groups']}" for s, v in summary["splits"].items())
    caption = f"groups: {groups}; skipped files: {summary['skipped']}"
    emit_table(cells, ["class", *splits], title=title, caption=caption)


def _list_skipped(
    skipped: list[tuple[str, str]] | tuple[tuple[str, str], ...], where: Path
) -> None:
    if not skipped:
        return
    for path, problem in skipped[:_MAX_LISTED]:
        warn(f"skipped {path}: {problem}")
    more = len(skipped) - _MAX_LISTED
    tail = f" ({more} more not shown)" if more > 0 else ""
    warn(f"{len(skipped)} file(s) skipped{tail}; all are listed in {where / 'skipped.csv'}")


@app.command()
def synth(
    out: OutOption,
    clips_per_class: Annotated[
        int,
        typer.Option(
            help="Clips per class (training and test together).",
            callback=within(COMMANDS["clips_per_class"]),
        ),
    ] = 40,
    videos_per_class: Annotated[
        int,
        typer.Option(
            help="Simulated source videos per class (the groups).",
            callback=within(COMMANDS["videos_per_class"]),
        ),
    ] = 8,
    test_videos_per_class: Annotated[
        int,
        typer.Option(
            help="Of those, videos per class in the test split.",
            callback=within(COMMANDS["test_videos_per_class"]),
        ),
    ] = 2,
    seed: Annotated[
        int, typer.Option(help="Random seed (same seed, same files).", callback=within(SEED))
    ] = 0,
    min_seconds: Annotated[
        float, typer.Option(help="Shortest clip.", callback=within(COMMANDS["synth_seconds"]))
    ] = 1.0,
    max_seconds: Annotated[
        float,
        typer.Option(help="Longest clip (MAD: 10 s).", callback=within(COMMANDS["synth_seconds"])),
    ] = 10.0,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Write a synthetic data set in MAD layout (training.csv, test.csv, WAVs).

    For demos and tests without downloading MAD: the sounds are generated, not
    recorded, so accuracy on them says nothing about real recordings.

    Examples:

      serenesense data synth --out synth/

      serenesense data synth --out synth/ --clips-per-class 40 --seed 1 -f json
    """
    from serenesense_cli.data.synth import synthesize_dataset

    if min_seconds > max_seconds:
        from serenesense_cli.errors import BadInputError

        raise BadInputError(f"--min-seconds ({min_seconds}) is above --max-seconds ({max_seconds})")
    with progress_bars() as on_progress:
        result = synthesize_dataset(
            out,
            clips_per_class=clips_per_class,
            videos_per_class=videos_per_class,
            test_videos_per_class=test_videos_per_class,
            seed=seed,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            on_progress=on_progress,
        )
    clips: dict[str, dict[str, int]] = dict(result.clips)
    splits = [s for s in _SPLIT_ORDER if s in clips] + [s for s in clips if s not in _SPLIT_ORDER]
    rows = []
    for label in result.classes:
        row: dict[str, Any] = {"class": label}
        for split in splits:
            row[split] = clips[split].get(label, 0)
        row["total"] = sum(row[s] for s in splits)
        rows.append(row)
    total: dict[str, Any] = {"class": "total"}
    for key in [*splits, "total"]:
        total[key] = sum(r[key] for r in rows)
    columns = ["class", *splits, "total"]
    if output is OutputFormat.json:
        emit_json(
            {
                "root": result.root,
                "classes": list(result.classes),
                "clips": clips,
                "seconds": result.seconds,
                "videos": result.videos,
            }
        )
        return
    if output is OutputFormat.csv:
        emit_csv([*rows, total], columns)
        return
    emit_table([*rows, total], columns, title="Synthetic data set (clips)")
    emit_result_path(result.root)


@app.command()
def prepare(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCE...",
            help="MAD folder, folder-per-class, folder with manifest.csv, or a CSV manifest.",
            show_default=False,
        ),
    ],
    out: OutOption,
    source_format: Annotated[
        SourceKind,
        typer.Option(
            "--source-format",
            help="How to read the sources (auto: detect from the files present).",
        ),
    ] = SourceKind.auto,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Validation share carved from sources that have no val split.",
            callback=within(COMMANDS["split_fraction"]),
        ),
    ] = 0.15,
    test_fraction: Annotated[
        float,
        typer.Option(
            help="Test share carved from sources that have no test split.",
            callback=within(COMMANDS["split_fraction"]),
        ),
    ] = 0.15,
    seed: Annotated[
        int, typer.Option(help="Seed for the split (same seed, same split).", callback=within(SEED))
    ] = 0,
    min_seconds: Annotated[
        float,
        typer.Option(
            help="Skip clips shorter than this (seconds).",
            callback=within(COMMANDS["prepare_min_seconds"]),
        ),
    ] = 0.1,
    group_pattern: Annotated[
        str | None,
        typer.Option(
            help="Regex on a file's path naming its recording (first capture group), for "
            "folder/manifest sources without a group column. Default: one group per file.",
            show_default=False,
        ),
    ] = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Check, decode (16 kHz mono) and split sources into a prepared set for training.

    Several sources merge into one set (union of their classes). Bad files are
    listed and skipped. Re-running reuses audio already decoded and only
    decodes new or changed files.

    Examples:

      serenesense data prepare MAD_dataset/ --out mad/

      serenesense data prepare my_clips/ other_clips/ --out prepared/ --seed 1

      serenesense data prepare recordings.csv --out prepared/ -f json | jq .skipped
    """
    from serenesense_cli.data.prepare import prepare_dataset

    with progress_bars(transient=True) as on_progress:
        result = prepare_dataset(
            sources,
            out,
            source_format=source_format.value,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            min_seconds=min_seconds,
            group_pattern=group_pattern,
            on_progress=on_progress,
        )
    _list_skipped(result.skipped, result.root)
    for note in result.splits.get("notes", []):
        warn(note)
    for note in result.notes[:_MAX_LISTED]:
        warn(note)
    if len(result.notes) > _MAX_LISTED:
        warn(f"{len(result.notes) - _MAX_LISTED} more file(s) changed in the prepared copy")
    if len(result.classes) < 2:
        warn(
            f"{result.root}: only {len(result.classes)} class; `serenesense train` needs at "
            "least 2 (add a background class of recordings without the sound)"
        )
    log(
        f"{result.summary['clips']} clips: {result.decoded} decoded, {result.reused} reused, "
        f"{result.removed} removed, {len(result.skipped)} skipped ({result.seconds:.1f} s)"
    )
    if output is OutputFormat.json:
        emit_json(result.to_dict())
        return
    _render_summary(result.summary, output, title="Prepared data set (clips, hours)")
    if output is OutputFormat.table:
        emit_result_path(result.root)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A prepared data set folder.", show_default=False)],
    output: FormatOption = OutputFormat.table,
) -> None:
    """Show clips and hours per class and split of a prepared set.

    Examples:

      serenesense data info mad/

      serenesense data info mad/ -f csv > counts.csv
    """
    from serenesense_cli.data.cache import open_prepared

    prepared = open_prepared(path)
    summary = prepared.summary()
    if output is OutputFormat.json:
        payload = dict(summary)
        payload["splits_settings"] = prepared.meta.get("splits", {})
        payload["sources"] = prepared.meta.get("sources", [])
        payload["created"] = prepared.meta.get("created", {})
        emit_json(payload)
        return
    _render_summary(summary, output, title=f"{path} (clips, hours)")
    if summary["skipped"] and output is OutputFormat.table:
        log(f"{summary['skipped']} file(s) were skipped when preparing; see {path / 'skipped.csv'}")

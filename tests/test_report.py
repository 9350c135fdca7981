"""``serenesense report``: files, embedded figures, escaping, numbers equal metrics.json."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from serenesense_cli.cli import app
from serenesense_cli.report.build import MISSING, build_report, pct
from serenesense_cli.report.collect import load_run
from tests.conftest import write_tone_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Class names that must be escaped: HTML tags, an ampersand, matplotlib's mathtext "$".
ODD_CLASSES = {"low": "low", "high": "<b>x</b>", "noise": "noise & $x$"}


@pytest.fixture(scope="module")
def odd_prepared(tmp_path_factory) -> Path:
    """The tone set relabelled through a manifest with hostile class names."""
    from serenesense_cli.data.prepare import prepare_dataset

    base = tmp_path_factory.mktemp("odd")
    source = write_tone_dataset(base / "audio", clips_per_class=8, seconds=1.0)
    with (source / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for folder, label in ODD_CLASSES.items():
            for wav in sorted((source / folder).glob("*.wav")):
                writer.writerow([wav.relative_to(source).as_posix(), label])
    prepare_dataset([source], base / "prepared", val_fraction=0.25, test_fraction=0.25, seed=0)
    return base / "prepared"


@pytest.fixture(scope="module")
def runs(odd_prepared, tmp_path_factory) -> dict[str, Path]:
    """cnn and a one-block tiny AudioMAE, one epoch each, evaluated on the test split;
    plus a copy of the cnn run that was never evaluated."""
    from serenesense_cli.evaluate.run import evaluate_model
    from serenesense_cli.train.config import resolve_train_config
    from serenesense_cli.train.engine import train

    root = tmp_path_factory.mktemp("report_runs")
    quick = {"epochs": 1, "batch_size": 8}
    cnn = train(data=odd_prepared, model="cnn", runs_dir=root, name="cnn", overrides=quick)
    vit_config = resolve_train_config(
        "audiomae", overrides=quick, model_args={"size": "tiny", "depth": 1, "drop_path": 0.0}
    )
    vit = train(data=odd_prepared, config=vit_config, runs_dir=root, name="vit")
    evaluate_model(model=cnn.run_dir, data=odd_prepared, split="val")  # kept beside test
    for run in (cnn.run_dir, vit.run_dir):
        evaluate_model(model=run, data=odd_prepared, split="test")
    bare = root / "train" / "cnn_unevaluated"
    shutil.copytree(cnn.run_dir, bare)
    (bare / "metrics.json").unlink()
    (bare / "predictions.csv").unlink()
    shutil.rmtree(bare / "eval")
    return {"cnn": cnn.run_dir, "vit": vit.run_dir, "bare": bare}


def _table_row(markdown: str, run: str) -> list[str]:
    """The comparison-table cells of ``run`` in report.md."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == run:
            return cells
    raise AssertionError(f"no table row for {run}")


def test_report_files_figures_escaping_and_numbers(runner, runs, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["report", str(runs["cnn"]), str(runs["vit"]), "--out", str(out), "--title", "T&T"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out / "report.html")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))

    # Figures: PNG files, linked from Markdown, embedded (not linked) in HTML.
    pngs = sorted((out / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"comparison.png", "cnn_curves.png", "cnn_confusion.png", "cnn_f1.png"} <= names
    assert {"vit_curves.png", "vit_confusion.png", "vit_reliability.png"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"](figures/{png.name})" in markdown
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "figures/" not in re.sub(r"<(p|li|figcaption)>.*?</\1>", "", page)
    assert "<script" not in page

    # User strings are escaped everywhere.
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "noise &amp; $x$" in page
    assert "<title>T&amp;T</title>" in page
    assert "<b>x</b>" not in markdown and "&lt;b&gt;x&lt;/b&gt;" in markdown

    # Numbers in the report equal metrics.json.
    for run in ("cnn", "vit"):
        metrics = json.loads((runs[run] / "metrics.json").read_text())
        s = metrics["summary"]
        row = _table_row(markdown, run)
        assert pct(s["accuracy"]) in row and pct(s["macro_f1"]) in row
        assert "test split of prepared" in row
        for value in (s["accuracy"], s["macro_f1"], s["balanced_accuracy"], s["top2_accuracy"]):
            assert pct(value) in markdown and html.escape(pct(value)) in page
        for entry in metrics["per_class"]:
            assert entry["f1"] is None or pct(entry["f1"]) in markdown
        reported = next(r for r in summary["runs"] if r["run"] == run)
        assert reported["eval_acc"] == s["accuracy"]
        assert reported["eval_macro_f1"] == s["macro_f1"]
        history = list(csv.DictReader((runs[run] / "history.csv").open()))
        assert reported["training_seconds"] == pytest.approx(
            sum(float(r["seconds"]) for r in history)
        )
        assert reported["latency_p50_ms"] is None  # no bench.json: missing, not 0
        assert _table_row(markdown, run)[-1] == MISSING
    assert next(r for r in summary["runs"] if r["run"] == "vit")["model"] == "audiomae (tiny)"


def test_run_without_metrics_shows_missing(runs, tmp_path):
    result = build_report(runs=[runs["bare"]], out=tmp_path / "r")
    markdown = result.markdown.read_text(encoding="utf-8")
    row = _table_row(markdown, "cnn_unevaluated")
    assert row[-4:] == [MISSING] * 4  # eval set, accuracy, macro-F1, latency
    assert row[2] != MISSING and row[4] != MISSING  # parameters and val acc are there
    assert "metrics.json: missing" in markdown
    assert not (tmp_path / "r" / "figures" / "cnn_unevaluated_confusion.png").exists()
    (entry,) = result.rows
    assert entry["eval_acc"] is None and entry["parameters"] > 0


def test_parameters_and_size_come_from_the_weights_file(runs):
    from serenesense_cli.models.artifact import load_model
    from serenesense_cli.models.registry import count_parameters

    for run in ("cnn", "vit"):
        info = load_run(runs[run])
        assert info.parameters == count_parameters(load_model(runs[run]).model)
        assert info.weights_bytes == (runs[run] / "weights" / "best.safetensors").stat().st_size


def test_bench_exports_and_pretraining_runs(runs, tmp_path):
    run = tmp_path / "cnn_bench"
    shutil.copytree(runs["cnn"], run)
    bench = {"kind": "torch", "latency_ms": {"p50": 12.4, "p90": 14.0, "p99": 20.5, "max": 22}}
    (run / "bench.json").write_text(json.dumps({**bench, "peak_rss_mb": 310.4, "threads": 4}))
    (run / "export").mkdir()
    (run / "export" / "model.onnx").write_bytes(b"x" * 2_500_000)
    (run / "export" / "model.int8.onnx").write_bytes(b"x" * 700_000)
    onnx_bench = {"kind": "onnx", "latency_ms": {"p50": 3.5, "p90": 4, "p99": 5, "max": 6}}
    (run / "export" / "model.int8.bench.json").write_text(json.dumps(onnx_bench))

    pre = tmp_path / "pretrain" / "mae"
    (pre / "figures").mkdir(parents=True)
    (pre / "config.toml").write_text('task = "pretrain"\nmodel = "audiomae"\nepochs = 2\n')
    (pre / "history.csv").write_text(
        "epoch,step,train_loss,val_loss,lr,seconds\n1,5,0.9,0.95,0.0001,10\n2,10,0.7,0.8,5e-05,11\n"
    )
    for epoch in (1, 2):
        _tiny_png(pre / "figures" / f"reconstruction_epoch{epoch:03d}.png")

    result = build_report(runs=[run, pre], out=tmp_path / "r")
    markdown = result.markdown.read_text(encoding="utf-8")
    assert _table_row(markdown, "cnn_bench")[-1] == "12.4 ms"
    deploy = [line for line in markdown.splitlines() if "export/model" in line]
    assert any(
        "model.int8.onnx" in line and "3.5 ms" in line and "0.70 MB" in line for line in deploy
    )
    assert any(
        "export/model.onnx" in line and "2.50 MB" in line and MISSING in line for line in deploy
    )
    assert "## Self-supervised pretraining" in markdown
    assert "mae_reconstruction_epoch002.png" in markdown
    assert "reconstruction_epoch001" not in markdown
    assert (tmp_path / "r" / "figures" / "mae_curves.png").read_bytes()[:8] == PNG_MAGIC
    pre_row = _table_row(markdown, "mae")
    assert "0.7000" in pre_row and "0.8000" in pre_row and "21.0 s" in pre_row


def _tiny_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, dpi=40)
    plt.close(fig)


def test_not_a_run_folder_exits_2(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "absent"):
        result = runner.invoke(app, ["report", str(target), "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, result.output
        assert "not a run folder" in result.stderr


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"summary": 3}', "summary is not an object"),
        ('{"summary": {"accuracy": "x"}}', "summary.accuracy is not a number"),
        ('{"per_class": [1, 2]}', "per_class[0] is not an object"),
        ('{"confusion_matrix": {"classes": ["a", "b"], "counts": [[1, 2]]}}', "not 2 x 2"),
        ('{"calibration": {"counts": [1, "a"]}}', "calibration.counts[1] is not a number"),
        ("[]", "not a JSON object"),
        ("{", "unreadable"),
    ],
)
def test_malformed_metrics_json_is_left_out_with_a_warning(runner, runs, tmp_path, content, why):
    run = tmp_path / "cnn"
    shutil.copytree(runs["cnn"], run)
    (run / "metrics.json").write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "unexpected" not in result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("metrics.json" in line and why in line for line in warning), result.stderr
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "Files that could not be read" in markdown


def test_history_cells_that_are_not_numbers_are_left_out(runs, tmp_path):
    run = tmp_path / "cnn"
    shutil.copytree(runs["cnn"], run)
    text = (run / "history.csv").read_text(encoding="utf-8").splitlines()
    header, row = text[0].split(","), text[1].split(",")
    row[header.index("val_acc")] = "lots"
    (run / "history.csv").write_text("\n".join([text[0], ",".join(row)]) + "\n")
    result = build_report(runs=[run], out=tmp_path / "r")
    assert any("history.csv: 1 cell(s)" in p for p in result.problems)


def test_report_out_is_never_a_run_folder_and_replacing_warns(runner, runs, tmp_path):
    refused = runner.invoke(app, ["report", str(runs["cnn"]), "--out", str(runs["cnn"])])
    assert refused.exit_code == 2
    assert "would overwrite an input" in refused.stderr
    assert not (runs["cnn"] / "report.md").exists()
    out = tmp_path / "r"
    first = runner.invoke(app, ["report", str(runs["cnn"]), "--out", str(out)])
    assert first.exit_code == 0 and "replaced" not in first.stderr
    again = runner.invoke(app, ["report", str(runs["cnn"]), "--out", str(out)])
    assert again.exit_code == 0
    assert f"warning: replaced the report that was in {out}" in again.stderr


def test_report_prints_its_comparison_as_a_table_json_or_csv(runner, runs, tmp_path):
    import io

    out = tmp_path / "r"
    table = runner.invoke(app, ["report", str(runs["cnn"]), "--out", str(out)])
    assert table.exit_code == 0, table.output
    assert "Comparison" in table.stdout and table.stdout.splitlines()[-1] == str(
        out / "report.html"
    )
    as_json = runner.invoke(app, ["report", str(runs["cnn"]), "--out", str(out), "-f", "json"])
    payload = json.loads(as_json.stdout)
    assert payload["html"] == str(out / "report.html") and payload["comparison"][0]["run"]
    assert all(Path(figure).is_file() for figure in payload["figures"])
    as_csv = runner.invoke(app, ["report", str(runs["cnn"]), "--out", str(out), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 1 and rows[0]["run"] == payload["comparison"][0]["run"]


def _section(markdown: str, heading: str) -> list[str]:
    """The lines under ``heading`` up to the next heading."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def _rows(lines: list[str]) -> list[list[str]]:
    table = [line for line in lines if line.startswith("|")][2:]  # header and rule off
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]


def test_report_shows_kept_results_thresholds_worst_clips_and_data(
    runner, runs, odd_prepared, tmp_path
):
    from serenesense_cli.data.cache import open_prepared
    from serenesense_cli.evaluate.run import evaluate_model
    from serenesense_cli.report.document import md_escape

    run = tmp_path / "a" / "cnn"
    shutil.copytree(runs["cnn"], run)
    evaluate_model(model=run, data=odd_prepared, split="validation")  # the last one is val now
    assert json.loads((run / "metrics.json").read_text())["data"]["split"] == "val"
    test = json.loads((run / "eval" / "prepared-test" / "metrics.json").read_text())
    twin = tmp_path / "b" / "cnn"
    shutil.copytree(runs["cnn"], twin)
    (twin / "config.toml").write_text(
        (twin / "config.toml").read_text().replace(str(odd_prepared.resolve()), "/gone/data")
    )
    export = run / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"x" * 1000)
    (export / "model.int8.onnx").write_bytes(b"x" * 400)
    quantized = {
        "format": "serenesense-quantize",
        "source": str(export / "model.onnx"),
        "mode": "static",
        "calibration": "prepared set",
        "calibration_clips": 8,
        "top1_agreement": 0.95,
        "agreement_clips": 20,
        "split": "test",
        "accuracy_fp32": 0.5,
        "accuracy_int8": 0.45,
        "accuracy_change": -0.05,
        "macro_f1_fp32": 0.4,
        "macro_f1_int8": 0.35,
        "macro_f1_change": -0.05,
        "measured": {"path": str(odd_prepared), "split": "test", "clips": 6},
    }
    (export / "model.int8.quantize.json").write_text(json.dumps(quantized))
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    _tiny_png(out / "figures" / "stale_run_confusion.png")
    (out / "figures" / "notes.txt").write_text("mine")

    result = runner.invoke(app, ["report", str(run), str(twin), "--out", str(out)])
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text(encoding="utf-8")

    # Runs of the same name get distinct headings; stale figures are gone, other files stay.
    assert "## Run: a/cnn" in markdown and "## Run: b/cnn" in markdown
    assert not (out / "figures" / "stale_run_confusion.png").exists()
    assert (out / "figures" / "notes.txt").read_text() == "mine"
    assert {"a_cnn_pr.png", "a_cnn_logmel.png", "b_cnn_pr.png"} <= {
        p.name for p in (out / "figures").iterdir()
    }
    assert not (out / "figures" / "b_cnn_logmel.png").exists()  # its data set is gone

    # The comparison shows the test split although val was evaluated last.
    assert pct(test["summary"]["accuracy"]) in _table_row(markdown, "a/cnn")
    assert "test split of prepared" in _table_row(markdown, "a/cnn")
    evaluations = _rows(_section(markdown, "### All evaluations"))
    assert {r[1] for r in evaluations if r[0] == "weights/best.safetensors"} >= {
        "prepared-test",
        "prepared-val",
    }

    # INT8 accuracy comes from the quantize results, no longer missing.
    deploy = _rows(_section(markdown, "## Deployment artefacts"))
    int8 = next(r for r in deploy if r[1] == "export/model.int8.onnx")
    fp32 = next(r for r in deploy if r[1] == "export/model.onnx")
    assert int8[5:7] == ["45.00 %", "35.00 %"] and fp32[5:7] == ["50.00 %", "40.00 %"]
    assert "(serenesense quantize)" in int8[4]
    (quant,) = _rows(_section(markdown, "## INT8 quantization"))
    assert quant[2] == "static" and "95.00 % of 20" in quant[4] and quant[6] == "-5.00 pts"

    # Class counts per split: the training set's, or the evaluated sets' when it is gone.
    prepared = open_prepared(odd_prepared)
    counts = {r[0]: r[1:] for r in _rows(_section(markdown, "### Data"))}
    for index, name in enumerate(prepared.classes):
        expected = [str(prepared.class_counts(s)[index]) for s in prepared.splits]
        assert counts[md_escape(name)] == expected
    b_section = markdown[markdown.index("## Run: b/cnn") :]
    assert "(/gone/data) is not reachable" in b_section

    # Threshold table = thresholds.csv; worst clips = predictions.csv, most confident first.
    with (run / "eval" / "prepared-val" / "thresholds.csv").open(encoding="utf-8") as handle:
        saved = {r["class"]: r for r in csv.DictReader(handle)}
    a_section = markdown[: markdown.index("## Run: b/cnn")]
    table = _rows(_section(a_section, "### Precision-recall and thresholds per class"))
    assert [r[0] for r in table] == [md_escape(c) for c in saved]
    for row, entry in zip(table, saved.values(), strict=True):
        assert row[1] == f"{float(entry['threshold']):.3f}"
        assert row[4] == pct(float(entry["f1"]))
    with (run / "eval" / "prepared-test" / "predictions.csv").open(encoding="utf-8") as handle:
        wrong = [r for r in csv.DictReader(handle) if r["true"] != r["predicted"]]
    worst = _rows(_section(a_section, "### Most confidently misclassified clips"))
    assert len(worst) == min(10, len(wrong))
    if wrong:
        top = max(wrong, key=lambda r: float(r["confidence"]))
        assert worst[0][3] == f"{float(top['confidence']):.3f}"
        scores = [float(r[3]) for r in worst]
        assert scores == sorted(scores, reverse=True)


def test_unique_names_use_the_shortest_telling_path(tmp_path):
    from serenesense_cli.report.build import unique_names
    from serenesense_cli.report.collect import RunInfo

    paths = [tmp_path / "x" / "runs" / "cnn", tmp_path / "y" / "runs" / "cnn", tmp_path / "crnn"]
    infos = [RunInfo(path=p, name=p.name, task="train") for p in [*paths, paths[0]]]
    assert unique_names(infos) == ["x/runs/cnn", "y/runs/cnn", "crnn", "x/runs/cnn (2)"]


def test_unusable_kept_results_are_left_out_with_a_warning(runner, runs, tmp_path):
    run = tmp_path / "cnn"
    shutil.copytree(runs["cnn"], run)
    (run / "eval" / "prepared-test" / "predictions.csv").write_text("a,b\n1,2\n")
    (run / "eval" / "prepared-val" / "metrics.json").write_text('{"summary": {"accuracy": "x"}}')
    (run / "eval" / "prepared-val" / "predictions.csv").unlink()
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("eval/prepared-test/predictions.csv: left out, no path" in w for w in warnings)
    assert any("eval/prepared-val/metrics.json: left out" in w for w in warnings)
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "validation predictions: missing" in markdown
    assert "predictions.csv: missing" in _section(
        markdown, "### Most confidently misclassified clips"
    )

"""What `modelfn build` shows: timestamped stage lines off a terminal, a table that fits 80
columns without cutting names, and library chatter in a build log instead of the output."""

from __future__ import annotations

import io
import re
import sys
import threading
import warnings

from infra.build import buildlog
from infra.cli import main
from tests.build.helpers import make_mlp_onnx, rows, write_catalog, write_npz

STAMPED = re.compile(r"^\d\d:\d\d:\d\d ")


def test_off_a_terminal_the_build_prints_timestamped_stage_lines_and_an_80_column_table(tmp_path, capsys,
                                                                                      monkeypatch):
    make_mlp_onnx(tmp_path / "m.onnx")
    write_npz(tmp_path / "val.npz", x=rows((32,), n=32))
    name = "a-model-with-a-rather-long-descriptive-name"
    catalog = write_catalog(tmp_path, [{"name": name, "source": "m.onnx", "validation": "val.npz",
                                        "quantize": "none"}])
    monkeypatch.setenv("COLUMNS", "80")
    # when built with stdout/stderr redirected (capsys: not a terminal)
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    out, err = capsys.readouterr()
    # then every stage is a plain line with a timestamp, as it happens
    lines = err.splitlines()
    assert all(STAMPED.match(line) for line in lines), lines
    for stage in ("convert", "quantize", "gate", "measure", "package"):
        assert any(line.endswith(f"{name}: {stage}") for line in lines), stage
    assert re.search(rf"{name}: built in \d+\.\d s", err)
    assert "modelfn build" in out and "fp32→shipped" in " ".join(out.split())


def test_the_table_fits_80_columns_and_keeps_long_names(tmp_path, capsys):
    make_mlp_onnx(tmp_path / "m.onnx")
    write_npz(tmp_path / "val.npz", x=rows((32,), n=32))
    name = "a-model-with-a-rather-long-descriptive-name"
    catalog = write_catalog(tmp_path, [{"name": name, "source": "m.onnx", "validation": "val.npz",
                                        "quantize": "dynamic", "tolerance": {"min_cosine": 0.5}}])
    from rich.console import Console

    from infra.build import build_catalog
    from infra.build.command import _table
    from infra.catalog import load_catalog

    results = build_catalog(load_catalog(catalog), tmp_path / "build")
    console = Console(width=80, file=io.StringIO(), force_terminal=False, color_system=None)
    _table(results, console)
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text.split("\n\n")[0]
    assert name.replace("-", "") in re.sub(r"[\s│|-]", "", text)
    flat = " ".join(text.split())
    assert "~ estimate" in flat and "top1 = top-1 agreement" in flat  # the legend for the short forms


def test_library_output_goes_to_the_build_log_and_other_threads_write_through(tmp_path, capsys):
    seen_elsewhere = []

    def other_thread():
        print("progress line from another thread")
        seen_elsewhere.append(True)

    with buildlog.capture(tmp_path, "m") as log:
        print("failed in shape inference", Exception)
        print("failed in shape inference", Exception, file=sys.stderr)
        warnings.warn_explicit("overflow encountered in cast", RuntimeWarning, "calib.py", 12)
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        with buildlog.passthrough():
            print("stage line")
    out, err = capsys.readouterr()
    assert "failed in shape inference" not in out + err
    assert "progress line from another thread" in out and "stage line" in out
    text = (tmp_path / "logs" / "m.log").read_text()
    assert text.count("failed in shape inference") == 2
    summary = log.summary()
    assert summary.startswith("3 library message(s) captured in") and str(tmp_path / "logs" / "m.log") in summary
    assert "2× failed in shape inference" in summary

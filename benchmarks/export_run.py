"""A trained run's model exported to every format, measured on its own test photos (issue 24).

    python benchmarks/export_run.py [RUN_DIR]   # default: runs/accuracy/flowers_ft (benchmarks/accuracy.py)

The run's ``model.keras`` goes through :func:`kerasclf.export.export_model` (what ``kerasclf export``
runs) as ONNX, LiteRT and OpenVINO in float, and LiteRT / OpenVINO in int8 (calibrated on 256
validation photos, judged on the test split, ``int8_method="auto"``). For each artefact, on the
run's whole test split read as training read it: top-1 agreement with Keras, Keras and artefact
accuracy, the largest output difference; then CPU throughput on one batch of 32 test photos in
one process, every runtime and Keras ``model.predict`` in alternating rounds (best round each, so
background load hits all alike), as images/s and the ratio to Keras predict.

Goals (issue 24): float parity >= 99.9% top-1, int8 within 1 point of Keras, best runtime >= 2.5x
Keras predict. Writes ``benchmarks/results/export_run.json`` with the commit (a tree with
uncommitted changes is refused unless ``--allow-dirty``) and its table between the ``export_run``
markers of ``docs/benchmarks.md`` (``--table`` rewrites the table from the JSON alone).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any


from _provenance import add_allow_dirty, commit_or_exit, write_block  # benchmarks/: one rule for every recorded result
from _timing import best_rates  # benchmarks/: one way to time competing runners
from kerasclf.evaluate import run_split
from kerasclf.export import open_model
from kerasclf.export.convert import ExportCheckError, export_model
from kerasclf.export.parity import parity
from kerasclf.formats import FORMATS
from kerasclf.io import load_model

ROOT = Path(__file__).resolve().parents[1]
#: (label, format, int8)
ARMS = [("ONNX", "onnx", False), ("LiteRT", "litert", False), ("OpenVINO", "openvino", False),
        ("LiteRT int8", "litert", True), ("OpenVINO int8", "openvino", True)]
GOALS = {"parity": 0.999, "int8_points": 0.01, "speedup": 2.5}
DOCS = ROOT / "docs" / "benchmarks.md"


def render(record: dict[str, Any]) -> str:
    """The markdown table of one recorded run (what ``--table`` writes into docs/benchmarks.md)."""
    met = record["passed"]
    lines = [f"`python benchmarks/export_run.py {record['run']}` at commit {record['commit']} ({record['date']}): "
             f"`{Path(record['model']).name}` at {record['image_size'][0]} px, {record['n_test']} test photos; "
             f"Keras predict {record['keras_img_per_s']} img/s (batch 32). Goals: float parity "
             f"{'met' if met['parity'] else 'missed'}, int8 within a point {'met' if met['int8'] else 'missed'}, "
             f"best runtime >= 2.5x Keras {'met' if met['speedup'] else 'missed'}.", "",
             "| artefact | runtime | top-1 agreement | accuracy (Keras) | change | img/s | x Keras predict |",
             "|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        if not r["kept"]:
            lines.append(f"| {r['artefact']} | rejected by the export check: {r['why'].split(': ', 1)[-1][:160]} | | | | | |")
            continue
        lines.append(f"| {r['artefact']}{' (' + r['int8_method'] + ')' if r.get('int8_method') else ''} | {r['runtime']} | "
                     f"{r['top1_agreement']:.4f} | {r['artefact_accuracy']:.4f} ({r['keras_accuracy']:.4f}) | "
                     f"{100 * r['accuracy_change']:+.2f} pt | {r['img_per_s']} | {r['vs_keras']:.2f}x |")
    return "\n".join(lines) + "\n"


def write_table(record: dict[str, Any]) -> None:
    """Put :func:`render` between the ``export_run`` markers of docs/benchmarks.md."""
    write_block(DOCS, "export_run", render(record))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", default=str(ROOT / "runs" / "accuracy" / "flowers_ft"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_run.json"))
    p.add_argument("--table", action="store_true", help="only write --out's table into docs/benchmarks.md")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.table:
        write_table(json.loads(Path(args.out).read_text()))
        return 0
    commit = commit_or_exit(p, args.allow_dirty)
    run = Path(args.run)
    model_path = run / "model.keras"
    keras_model = load_model(model_path)
    size = keras_model.image_size
    val = run_split(run, "val", image_size=size, max_images=256)
    test_x, test_y = run_split(run, "test", image_size=size)
    reference = keras_model.predict(test_x, batch_size=args.batch)
    tmp = Path(tempfile.mkdtemp(prefix="kerasclf-export-run-"))
    rows: list[dict[str, Any]] = []
    runners = {"Keras predict": lambda v: keras_model.predict(v, batch_size=args.batch)}
    for label, fmt, int8 in ARMS:
        start = time.perf_counter()
        out = tmp / f"model{'_int8' if int8 else ''}{FORMATS[fmt]}"
        try:
            result = export_model(model_path, fmt, out, calibration=val, check=(test_x, test_y), int8=int8,
                                  int8_method="auto")
        except ExportCheckError as exc:  # an int8 model more than a point off: the card says which methods failed
            rows.append({"artefact": label, "kept": False, "why": str(exc)})
            print(f"{label}: rejected ({exc})", flush=True)
            continue
        artefact = open_model(result.path)
        outputs = artefact.predict(test_x, batch_size=args.batch)
        row = {"artefact": label, "kept": True, "runtime": artefact.runtime, "export_s": round(time.perf_counter() - start, 1),
               "int8_method": result.parity.get("int8_method"),
               **parity(reference, outputs, keras_model.task, test_y)}
        rows.append(row)
        runners[label] = lambda v, a=artefact: a.predict(v, batch_size=args.batch)
        print(f"{label}: agreement {row['top1_agreement']:.4f}, accuracy {row['artefact_accuracy']:.4f} "
              f"(Keras {row['keras_accuracy']:.4f})", flush=True)
    x = test_x[:args.batch]
    rates = best_rates({k: (lambda fn=fn: fn(x)) for k, fn in runners.items()}, len(x), args.rounds)
    for row in rows:
        if row["kept"]:
            row.update(img_per_s=round(rates[row["artefact"]], 1),
                       vs_keras=round(rates[row["artefact"]] / rates["Keras predict"], 2))
    float_rows = [r for r in rows if r["kept"] and "int8" not in r["artefact"]]
    int8_rows = [r for r in rows if r["kept"] and "int8" in r["artefact"]]
    record = {"commit": commit, "run": str(run), "model": str(model_path), "image_size": list(size),
              "n_test": int(len(test_x)), "keras_img_per_s": round(rates["Keras predict"], 1),
              "date": time.strftime("%Y-%m-%d"), "host": platform.node(), "rows": rows, "goals": GOALS,
              "passed": {"parity": bool(float_rows) and min(r["top1_agreement"] for r in float_rows) >= GOALS["parity"],
                         "int8": bool(int8_rows) and all(abs(r["accuracy_change"]) <= GOALS["int8_points"] for r in int8_rows),
                         "speedup": max((r.get("vs_keras", 0) for r in rows if r["kept"]), default=0) >= GOALS["speedup"]}}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    write_table(record)
    print(json.dumps(record["passed"]), f"Keras predict {record['keras_img_per_s']} img/s;",
          ", ".join(f"{r['artefact']} {r.get('vs_keras')}x" for r in rows if r["kept"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``kerasclf`` command: parses arguments, calls the task functions, prints results.

A user error (:class:`~kerasclf.errors.KerasclfError`) is printed on one line and exits 2.

TensorFlow's C++ start-up lines are hidden (``import kerasclf`` does it, see
:mod:`kerasclf._startup`); ``kerasclf --verbose COMMAND`` shows them.

Example:
    $ kerasclf demo
    $ kerasclf zoo "*net*"
    $ kerasclf recipes
    $ kerasclf train cifar100_simple_cnn --set train.epochs=3
    $ kerasclf predict runs/demo/model.keras new_images/ --out predictions.csv
    $ kerasclf export runs/demo/model.keras --format onnx
    $ kerasclf predict runs/demo/model.onnx new_images/ --runtime onnxruntime
    $ kerasclf scan shared/model.onnx shared/model.savedmodel
"""
from __future__ import annotations

import argparse
import json
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kerasclf import __version__
from kerasclf._progress import set_quiet
from kerasclf.data.checks import run_check
from kerasclf.errors import ConfigError, DataError, KerasclfError
from kerasclf.evaluate import analyze_run, evaluate_model, labelled_images
from kerasclf.experiment import compare
from kerasclf.export import FORMATS, RUNTIMES, export_model
from kerasclf.export.convert import INT8_METHODS
from kerasclf.export.compose import TTA_VIEWS
from kerasclf.export.runtimes import artefact_format
from kerasclf.features.artifacts import ARTIFACT_SUFFIX, LEGACY_SUFFIXES, convert_artifact
from kerasclf.features.cluster import ClusterModel, as_spec, predict_folder, read_names, run_cluster
from kerasclf.features.audit import FILTERS as AUDIT_FILTERS
from kerasclf.features.audit import audit
from kerasclf.features.commands import load_predictor, run_head
from kerasclf.features.enriched import DEFAULT_FEATURES, TAPS, known_taps
from kerasclf.features.extract import DEFAULT_CACHE, extract_features
from kerasclf.features.heads import HEAD_KINDS
from kerasclf.io import (
    TASK_NAMES,
    ModelFacts,
    adopt_model,
    card_path,
    chosen_model,
    is_run_folder,
    load_model,
    model_card,
    read_card,
)
from kerasclf.predict import format_table, predict_paths
from kerasclf.recipes import describe
from kerasclf.review import open_review
from kerasclf.security import check_model, scan_model, trusted
from kerasclf.train import load_recipe, lr_find_path, lr_find_recipe, train
from kerasclf.zoo import build, get_cfg, list_models
from kerasclf.zoo.layers import PREPROCESS_MODES

__all__ = ["main", "build_parser"]


def cmd_demo(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe("demo", overrides)
    print(f"kerasclf demo: {recipe.model.name} on scikit-learn's handwritten digits "
          f"(1,797 real 8x8 images, upsampled to 32x32 RGB), split 70/10/20")
    result = train(recipe, overwrite=args.overwrite, verbose=args.verbose)
    _print_run(result)
    acc = result.metrics["test"]["accuracy"]
    if acc < args.min_accuracy:
        print(f"demo: test accuracy {acc:.4f} is below {args.min_accuracy}; something is wrong", file=sys.stderr)
        return 1
    print(f"demo: test accuracy {acc:.4f} >= {args.min_accuracy}: OK")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.name:
        overrides.append(f"name={args.name}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe(args.recipe, overrides + _decisions_override(args))
    result = train(recipe, overwrite=args.overwrite, resume=args.resume, verbose=args.verbose)
    _print_run(result)
    return 0


def _decisions_override(args: argparse.Namespace) -> list[str]:
    """``--decisions PATH`` as the recipe override ``data.decisions=PATH`` (quoted: any path is a YAML string)."""
    return [f"data.decisions={json.dumps(str(args.decisions))}"] if args.decisions else []


def _add_decisions(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--decisions", metavar="DECISIONS_CSV",
                        help=f"a review's decisions.csv (`kerasclf review`): relabel and exclude images before "
                             f"{what}; the image files stay as they are (recipe key data.decisions)")


def cmd_lr_find(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, list(args.set or []))
    out = Path(args.out) if args.out else lr_find_path(recipe, args.stage)
    result = lr_find_recipe(recipe, stage=args.stage, out=out, overwrite=args.overwrite)
    chosen = recipe.train.lr_find.suggestion
    print(f"lr-find (stage {args.stage}): valley {result.suggestions['valley']:.2e}  "
          f"steepest {result.suggestions['steepest']:.2e}  ({len(result.lrs)} steps; plot: {out})")
    print(f"use it: --set train.{'optimizer' if args.stage == 1 else 'fine_tune'}.learning_rate="
          f"{result.suggestions[chosen]:.2e}  (or learning_rate: find in the recipe)")
    return 0


def _print_run(result: Any) -> None:
    m = result.metrics
    print(f"\nrun folder: {result.run_dir}")
    print(f"model:      {result.model_path}")
    for split in ("val", "test"):
        if split in m and "accuracy" in m[split]:
            tta = m.get(f"{split}_tta", {}).get("accuracy")
            print(f"{split} accuracy: {m[split]['accuracy']:.4f}" + (f"  (with flip TTA {tta:.4f})" if tta is not None else ""))
    if m.get("tta"):
        t = m["tta"]
        print(f"TTA model:  {Path(result.run_dir) / t['model']}  ("
              + ("better" if t["chosen"] else "not better") + " than the plain model on validation)")
    print(f"train time: {m['train_time_s']:.1f} s  ({m['train_images_per_s']:.0f} images/s)")


def cmd_zoo(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    rows = []
    for name in names:
        cfg = get_cfg(name)
        params = ""
        if not args.no_params:
            try:
                model = build(name, weights=None) if cfg.pretrained else build(name)
                params = f"{model.count_params():,}"
            except KerasclfError as exc:  # a builder that needs options still gets listed
                params = f"? ({type(exc).__name__})"
        rows.append((name, cfg.family, params, "x".join(map(str, cfg.input_shape)), cfg.description))
    head = ("name", "family", "params", "input", "description")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + str(r[4])[:70])
    print("\nany keras.applications backbone works too: kerasclf.zoo.build('backbone_head', backbone='MobileNetV2', ...)")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """Print each built-in recipe's name and description, one per line."""
    described = describe()
    width = max(map(len, described))
    for name, text in described.items():
        print(f"{name.ljust(width)}  {text}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if Path(args.model).suffix in (ARTIFACT_SUFFIX, *LEGACY_SUFFIXES):  # a head or clustering (old ones refused)
        if _model_facts(args).given:
            raise ConfigError(f"{args.model} records its classes, input size and preprocessing; "
                              f"drop {', '.join(_model_facts(args).given)}")
        predictor = load_predictor(args.model)
        if isinstance(predictor, ClusterModel):
            names = read_names(args.names, predictor.k) if args.names else None
            plot = Path(args.out).with_suffix(".png") if args.out else Path(args.model).with_name("predicted_first15.png")
            rows = predict_folder(predictor, args.paths, names, plot_path=plot, out_csv=args.out,
                                  batch_size=args.batch_size, verbose=True)
            print(f"\n{len(rows)} images assigned; the first 15 are plotted in {plot}")
            return 0
        rows = predictor.predict_paths(args.paths, top_k=args.top_k, batch_size=args.batch_size, out_csv=args.out)
    else:
        _say_which_model(Path(args.model))
        rows = predict_paths(args.model, args.paths, top_k=args.top_k, batch_size=args.batch_size,
                             out_csv=args.out, runtime=args.runtime, facts=_model_facts(args))
    print(format_table(rows, limit=None if args.all else 50))
    if args.out:
        print(f"\nwrote {len(rows)} rows to {args.out}")
    return 0


def _say_which_model(path: Path) -> None:
    """Name the model a prediction uses: a run folder's choice on validation (its model card says which),
    or the file given, with a note when its run chose another one."""
    run = path if path.is_dir() else path.parent
    if not (is_run_folder(run) and (run / "model.keras").is_file()):
        return
    chosen, why = chosen_model(run)
    if path.is_dir():
        print(f"model: {chosen} ({why})")
    elif path.resolve() != chosen.resolve() and path.suffix == ".keras":
        print(f"model: {path} as asked; note: its run chose {chosen.name} ({why}); "
              f"`kerasclf predict {run} ...` uses that")


def cmd_export(args: argparse.Namespace) -> int:
    """Export, verify against Keras on real images, write the card; a failed check exits 2."""
    facts = _model_facts(args)
    data, name = labelled_images(args.model, args.calibration, max_images=args.max_images, facts=facts)
    check, check_name = (None, None)
    if args.check:
        check, check_name = labelled_images(args.model, args.check, max_images=args.max_images, facts=facts)
        if not isinstance(check, tuple):
            raise DataError(f"--check {args.check}: give labelled images (val, test or a folder of class subfolders)")
    result = export_model(args.model, args.format, args.out, calibration=data, calibration_name=name,
                          check=check, check_name=check_name,
                          int8=args.int8, tta=tuple(args.tta or ()), ensemble=args.ensemble or (),
                          overwrite=args.overwrite, max_images=args.max_images, facts=facts,
                          int8_method=args.int8_method)
    p = result.parity
    for t in p.get("int8_tried") or ():
        print(f"int8 {t['method']} rejected: {t['reason']} (kept as {t['kept_as']})")
    int8 = f", int8 {p['int8_method']}" if args.int8 else ""
    print(f"exported {result.path} ({args.format}{int8}) in {result.seconds:.1f} s")
    print(f"check on {p['n_images']} images ({p['images']}) with {p['runtime']}: {p['reason']}")
    if p.get("artefact_accuracy") is not None:
        print(f"accuracy: Keras {p['keras_accuracy']:.4f}, artefact {p['artefact_accuracy']:.4f} "
              f"({p['accuracy_change']:+.4f})")
    print(f"model card: {result.card_path} (+ {result.card_path.with_suffix('.md').name})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the model card of an artefact (a .keras file gets one built from its metadata and run folder)."""
    path = Path(args.model)
    check_model(path)  # the gate, as for every command that opens a model file (--trust)
    has_card = card_path(path).is_file()
    card = read_card(path) if has_card or artefact_format(path) not in ("keras", "savedmodel") else model_card(path)
    if args.json:
        print(json.dumps(card, indent=2, default=str))
        return 0
    print(card_path(path).with_suffix(".md").read_text() if has_card else json.dumps(
        {k: v for k, v in card.items() if k != "recipe"}, indent=2, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    metrics = evaluate_model(args.model, args.data, batch_size=args.batch_size, facts=_model_facts(args))
    print(f"images: {metrics['n_images']}  accuracy: {metrics['accuracy']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    report = run_check(args.data, out_json=args.json, decisions=args.decisions)
    return 1 if args.strict and report.bad_files else 0


def cmd_compare(args: argparse.Namespace) -> int:
    board = compare(args.recipe, overrides=list(args.set or []) + _decisions_override(args),
                    output_dir=args.output_dir, overwrite=args.overwrite,
                    tta=args.tta, ensemble=args.ensemble, verbose=args.verbose or 0)
    print(board.table())
    print(f"\ncandidates on validation (gain vs the best single model, {board.best}):")
    for c in board.candidates:
        print(f"  {c['configuration']:<40} val acc {c['val_acc']:.4f}  {c['gain']:+.4f}"
              + ("  <- chosen" if c["configuration"] == board.chosen else ""))
    t = board.test
    print(f"\nchosen by validation: {board.chosen}  test accuracy: {t['accuracy']:.4f} (the only test evaluation)")
    print(f"saved: {board.saved.get('note', '')}")
    print(f"leaderboard and report: {board.out_dir}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    methods = tuple(m for m in args.explain.split(",") if m) if args.explain != "none" else ()
    result = analyze_run(args.target, args.data, split=args.split, out_dir=args.out,
                         explain_methods=methods, max_gallery=args.gallery, facts=_model_facts(args))
    metrics = result.get("metrics", {})
    if "accuracy" in metrics:
        print(f"accuracy: {metrics['accuracy']:.4f}")
    print(f"report: {result.get('report')}")
    if result.get("skipped"):
        path, why = result["skipped"][0]
        print(f"skipped {len(result['skipped'])} unusable file(s), listed in {result['skipped_csv']} "
              f"(e.g. {path}: {why})")
    return 0


def _weights_arg(value: str | None) -> Any:
    return None if value in (None, "none", "None") else value


def _add_model_facts(parser: argparse.ArgumentParser) -> None:
    """The options that tell kerasclf what a model it did not save cannot say (read by :func:`_model_facts`)."""
    g = parser.add_argument_group("a model kerasclf did not train (options for what its file cannot say)")
    g.add_argument("--classes", help="class names in output order: cat,dog or a text file with one name a line")
    g.add_argument("--task", choices=TASK_NAMES,
                   help="default: read from the output (1 sigmoid unit: binary, softmax: multiclass, "
                        "several sigmoid units: multilabel); a linear (logits) output gets the task's activation")
    g.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"),
                   help="image size for a model whose input size is not fixed")
    g.add_argument("--preprocess", choices=PREPROCESS_MODES,
                   help="what the model expects, when preprocessing is not inside it: scale01 (x/255), tf "
                        "(-1..1), caffe (BGR minus ImageNet mean), torch (ImageNet mean/std), none (raw 0..255)")


def _add_trust(parser: argparse.ArgumentParser) -> None:
    """``--trust``: run a model file the security gate refuses (read by :func:`main`)."""
    parser.add_argument("--trust", action="store_true",
                        help="run a model file the security gate refuses (ops or layers beyond tensor math, files "
                             "outside its folder, custom ops), after a one-line warning; only for a file whose "
                             "author you trust (`kerasclf scan FILE` shows what it holds); Keras safe_mode stays on")


def _model_facts(args: argparse.Namespace) -> ModelFacts:
    """The :class:`~kerasclf.io.ModelFacts` of the options :func:`_add_model_facts` added."""
    return ModelFacts.from_options(classes=args.classes, task=args.task, image_size=args.image_size,
                                   preprocess=args.preprocess)


def _image_size(args: argparse.Namespace) -> tuple[int, int] | None:
    return tuple(args.image_size) if args.image_size else None


def _layer_arg(value: str | None) -> str | None:
    """``--layer``: a layer name, ``auto``, or ``output`` (the model's output is the feature vector)."""
    return None if value in ("output", "none", None) else value


def _add_builder_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("feature extractor by name (zoo or keras.applications): builder options")
    g.add_argument("--alpha", type=float, help="width multiplier of MobileNet / MobileNetV2 (e.g. 0.25)")
    g.add_argument("--build-arg", action="append", metavar="KEY=VALUE", default=[],
                   help="any other builder keyword, e.g. --build-arg pooling=max (repeatable; YAML values)")


def _feature_source(model: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """``(model, build_kwargs)`` for features/cluster: a model file loaded with the model facts, or a name."""
    facts = _model_facts(args)
    build_kwargs: dict[str, Any] = {} if args.alpha is None else {"alpha": args.alpha}
    for item in args.build_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--build-arg {item}: write KEY=VALUE, e.g. --build-arg pooling=max")
        build_kwargs[key.strip()] = yaml.safe_load(value)
    path = Path(model)
    if path.suffix in (".keras", ".h5", ".hdf5") or path.is_dir():
        if build_kwargs or getattr(args, "weights", "default") != "default":
            raise ConfigError(f"{model} is a model file: --alpha / --build-arg / --weights are for a model built by "
                              f"name; drop them")
        loaded = load_model(path, facts=facts)
        if loaded.format == "export":
            raise ConfigError(f"{model}: an exported SavedModel has no layers to cut; use the .keras/.h5 file")
        return loaded, {}
    named = [opt for opt in facts.given if opt != "--image-size"]
    if named:
        raise ConfigError(f"'{model}' is built by name with its preprocessing inside; {', '.join(named)} "
                          f"apply to a model file; drop them")
    return model, build_kwargs


def cmd_features(args: argparse.Namespace) -> int:
    spec = as_spec(args.data)
    model, build_kwargs = _feature_source(args.model, args)
    kw = {} if args.weights == "default" else {"weights": _weights_arg(args.weights)}
    fs = extract_features(model, spec, layer=_layer_arg(args.layer), batch_size=args.batch_size,
                          cache_dir=args.cache_dir, verbose=1, image_size=_image_size(args),
                          build_kwargs=build_kwargs, **kw)
    state = "cache hit" if fs.from_cache else f"{fs.images_per_second:.0f} images/s"
    print(f"features: {fs.features.shape[0]} x {fs.features.shape[1]}  ({state})")
    if fs.path:
        print(f"cached at: {fs.path}")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    pca = None if args.pca in (None, "none") else (float(args.pca) if "." in args.pca else int(args.pca))
    elbow = [int(k) for k in args.elbow.split(",")] if args.elbow else None
    kw = {} if args.weights == "default" else {"weights": _weights_arg(args.weights)}
    model, build_kwargs = _feature_source(args.features, args)
    summary = run_cluster(args.data, features_model=model, pca=pca, k=args.k, out_dir=args.out,
                          layer=_layer_arg(args.layer), elbow_ks=elbow, overwrite=args.overwrite,
                          image_size=_image_size(args), build_kwargs=build_kwargs, **kw)
    print(json.dumps({k: v for k, v in summary.items() if k in ("explained_variance", "sizes", "scores")},
                     default=float))
    print(f"wrote {args.out}: fill in {Path(args.out) / 'clusters.csv'} with a name per cluster, then "
          f"`kerasclf predict {Path(args.out) / 'clusters.skops'} FOLDER --names {Path(args.out) / 'clusters.csv'}`")
    return 0


def _taps_arg(wanted: bool | None, features: str, layer: str | None) -> tuple[str, ...] | str:
    """``--taps`` / ``--no-taps`` / neither (``"auto"``: what measured best for the extractor)."""
    if wanted is None:
        return "auto"
    if not wanted:
        return ()
    taps = known_taps(features, layer)
    if not taps:
        raise ConfigError(f"--taps: kerasclf knows no intermediate layers to tap for '{features}' at layer "
                          f"{layer or 'output'}; taps exist for {', '.join(TAPS)} at their pooled features")
    return taps


def cmd_head(args: argparse.Namespace) -> int:
    """A scikit-learn head on (cached) features of a labelled folder: fit, score on the test split, save."""
    kw = {} if args.weights == "default" else {"weights": _weights_arg(args.weights)}
    model, build_kwargs = _feature_source(args.features, args)
    if args.features == "MobileNet" and args.alpha is None:
        build_kwargs = {"alpha": 0.25, **build_kwargs}  # the offline ImageNet file
    c: Any = args.C if args.C == "auto" else [float(v) for v in args.C.split(",")]
    out = run_head(args.data, features_model=model, kind=args.kind, out_dir=args.out, layer=_layer_arg(args.layer),
                   image_size=_image_size(args), build_kwargs=build_kwargs, tta="auto" if args.tta is None else args.tta,
                   taps=_taps_arg(args.taps, args.features, _layer_arg(args.layer)),
                   C=c[0] if isinstance(c, list) and len(c) == 1 else c,
                   ratios=tuple(float(v) for v in args.split.split(",")), seed=args.seed, overwrite=args.overwrite,
                   verbose=1, **kw)
    val = (out.get("val") or {}).get("accuracy")
    print(f"{args.kind} head" + (f", C={out['C']:g}" if out["C"] is not None else "") + ": "
          + (f"val accuracy {val:.4f}, " if val is not None else "")
          + f"test accuracy {out['metrics'].get('accuracy', float('nan')):.4f} ({out['n_test']} images)")
    print(f"wrote {out['head']}: `kerasclf predict {out['head']} FOLDER`")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Likely label errors of a folder (or of a run's data, with its model's features): CSV, HTML, per-class share."""
    kw = {} if args.weights == "default" else {"weights": _weights_arg(args.weights)}
    if args.run:
        run = Path(args.run)
        if not (run / "recipe.yaml").is_file() or not (run / "model.keras").is_file():
            raise DataError(f"--run {run}: not a run folder (no recipe.yaml / model.keras); give a folder from `kerasclf train`")
        ignored = [opt for opt, given in (("DATA", args.data), ("--features", args.features),
                                          ("--weights", args.weights != "default"), ("--alpha", args.alpha is not None),
                                          ("--build-arg", args.build_arg)) if given] + list(_model_facts(args).given)
        if ignored:
            raise ConfigError(f"--run audits the run's own data with its own model; drop {', '.join(ignored)}")
        data = load_recipe(run / "recipe.yaml", _decisions_override(args)).data.load_spec()
        features, build_kwargs = load_model(run / "model.keras"), {}
        out = Path(args.out) if args.out else run / "audit"
    else:
        if not args.data:
            raise DataError("give the DATA folder to audit (class subfolders), or --run RUN_DIR")
        features, build_kwargs = _feature_source(args.features or DEFAULT_FEATURES, args)
        build_kwargs = build_kwargs or None  # None: audit()'s default extractor options
        data = args.data
        out = Path(args.out) if args.out else Path(f"{Path(args.data).resolve().name}_audit")
    result = audit(data, features=features, build_kwargs=build_kwargs, layer=_layer_arg(args.layer),
                   image_size=_image_size(args), tta=args.tta, folds=args.folds, filter_by=args.filter_by,
                   out_dir=out, cache_dir=args.cache_dir or DEFAULT_CACHE, gallery=args.gallery,
                   batch_size=args.batch_size, overwrite=args.overwrite,
                   decisions=None if args.run else args.decisions, **kw)
    for r in result.issues[:args.show]:
        print(f"{r['rank']:>4}  {r['file']}  {r['given_label']} -> {r['suggested_label']}  (score {r['score']:.3f})")
    if len(result.issues) > args.show:
        print(f"... {len(result.issues) - args.show} more in {result.files['csv']}")
    print("estimated share of label errors: " + ", ".join(
        f"{c} {v['estimated_error_share']:.1%}" for c, v in result.per_class.items()))
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s), listed in {result.files['skipped']} "
              f"(e.g. {result.skipped[0][0]}: {result.skipped[0][1]})")
    print(f"wrote {result.files['csv']} and {result.files['html']} (nothing was moved or changed)")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Write the review page of the sources; serve it on 127.0.0.1 until it is finished or closed."""
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    review = open_review(args.sources, out=args.out, overwrite=args.overwrite, top_losses=args.top_losses,
                         splits=splits)
    items = review.found.items
    reasons = {r: sum(r in it.reasons for it in items) for r in dict.fromkeys(r for it in items for r in it.reasons)}
    page = review.write_page()
    earlier = len(review.decisions())
    print(f"review: {len(items)} images (" + (", ".join(f"{n} {r}" for r, n in reasons.items()) or "nothing found")
          + f"); page {page}" + (f"; {earlier} earlier decisions in {review.decisions_path}" if earlier else ""))
    if args.no_serve:
        print(f"open {page} in a browser: decisions stay in the page; its d key downloads them as decisions.csv")
        return 0
    server = review.server(port=args.port)
    print(f"review page: {server.url}\n(127.0.0.1 only; stops when you press q on the page, close it, or Ctrl-C "
          f"here; each decision is appended to {review.decisions_path} at once)", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve()
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C)")
    print(f"{server.written} decisions written to {review.decisions_path} (nothing in the data folder was changed); "
          f"apply them: kerasclf train RECIPE --decisions {review.decisions_path}")
    return 0


def cmd_adopt(args: argparse.Namespace) -> int:
    """Save a model kerasclf did not train once with its facts inside; later commands need no options."""
    out = adopt_model(args.model, args.out, _model_facts(args), overwrite=args.overwrite)
    loaded = load_model(out)
    names = loaded.class_names
    print(f"wrote {out}: {loaded.task}, {len(names)} classes ({', '.join(names[:10])}{' ...' if len(names) > 10 else ''}), "
          f"input {loaded.image_size[0]}x{loaded.image_size[1]} raw RGB 0..255"
          + (f", added inside: {', '.join(f'{k} {v}' for k, v in loaded.meta['adopted_from'].items() if k.endswith('_added'))}"
             if any(k.endswith("_added") for k in loaded.meta["adopted_from"]) else ""))
    print(f"model card: {card_path(out)}; now e.g. `kerasclf predict {out} IMAGES`")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """What each model file is and what it would do beyond computing outputs; exit 1 if any is refused."""
    refused = unreadable = 0
    for name in args.files:
        try:
            report = scan_model(name)
        except KerasclfError as exc:
            print(f"error: {exc}", file=sys.stderr)
            unreadable += 1
            continue
        verdict = "ok" if report.ok else f"REFUSED ({len(report.findings)} finding(s); --trust runs it anyway)"
        print(f"{name}: {report.format}: {verdict}")
        print(f"  holds: {report.contents}")
        if report.files:
            print(f"  reads: {', '.join(report.files)}")
        for finding in report.findings:
            print(f"  would {finding.does}: {finding.what}{f' in {finding.where}' if finding.where else ''}")
        refused += not report.ok
    return 2 if unreadable else (1 if refused else 0)


def cmd_convert_artifact(args: argparse.Namespace) -> int:
    out = convert_artifact(args.path, trust=args.trust)
    print(f"wrote {out} (loads without running code); {args.path} is left as it was")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kerasclf", description="Image classification with Keras 3: "
                                "train, compare, analyse, predict.")
    p.add_argument("--version", action="version", version=f"kerasclf {__version__}")
    p.add_argument("--verbose", action="store_true", dest="tf_logs",
                   help="show TensorFlow's C++ start-up lines (give it before the command: "
                        "kerasclf --verbose zoo); same as KERASCLF_VERBOSE=1")
    quiet_help = ("no progress bars (before or after the command: kerasclf --quiet check DIR or kerasclf check "
                  "DIR --quiet); bars are drawn only when stderr is a terminal anyway; same as KERASCLF_QUIET=1")
    p.add_argument("--quiet", action="store_true", help=quiet_help)
    # every command takes --quiet too; SUPPRESS: a command's own default must not undo `kerasclf --quiet CMD`
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=quiet_help)
    sub = p.add_subparsers(dest="command", required=True)

    def verbosity(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2),
                        help="Keras progress: 0 silent, 1 bar, 2 one line per epoch")

    d = sub.add_parser("demo", parents=[common], help="train the demo model on the bundled digits, offline")
    d.add_argument("--overwrite", action="store_true", help="replace runs/demo if it exists")
    d.add_argument("--epochs", type=int, default=None)
    d.add_argument("--output-dir", default="runs")
    d.add_argument("--min-accuracy", type=float, default=0.95,
                   help="exit 1 if the test accuracy is below this (the demo's promise)")
    d.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key")
    verbosity(d)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", parents=[common], help="train one recipe (YAML) into runs/<name>/")
    t.add_argument("recipe", help="a YAML recipe path or a built-in recipe name (see `kerasclf recipes`)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.epochs=3 (repeatable)")
    t.add_argument("--name", help="run name (default: the recipe's)")
    t.add_argument("--output-dir", help="parent folder of the run folder (default: runs)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run")
    _add_decisions(t, "the split")
    verbosity(t)
    t.set_defaults(func=cmd_train)

    lf = sub.add_parser("lr-find", parents=[common], help="LR finder: sweep the LR on a recipe's data, plot, suggest (trains nothing)")
    lf.add_argument("recipe", help="recipe YAML file or built-in name")
    lf.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    lf.add_argument("--stage", type=int, choices=(1, 2), default=1,
                    help="1: the first stage (frozen backbone); 2: fine-tuning as train.fine_tune unfreezes")
    lf.add_argument("--out", default=None, help="where the plot goes (default <output_dir>/<name>/lr_find/lr_find.png, "
                                                "lr_find_stage2.png for --stage 2); the sweep goes beside it as .json")
    lf.add_argument("--overwrite", action="store_true", help="replace a plot (and its .json) already there")
    lf.set_defaults(func=cmd_lr_find)

    z = sub.add_parser("zoo", parents=[common], help="list the models: name, family, params, default input size")
    z.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. '*net*'")
    z.add_argument("--no-params", action="store_true", help="skip building models to count params")
    z.set_defaults(func=cmd_zoo)

    rc = sub.add_parser("recipes", parents=[common], help="list the built-in recipes: name and description")
    rc.set_defaults(func=cmd_recipes)

    pr = sub.add_parser("predict", parents=[common], help="classify image files or folders with a saved model")
    pr.add_argument("model", help="a run folder (the model it chose on validation), a .keras / .h5 file, an export "
                                   "folder, or a head/clusters .skops")
    pr.add_argument("paths", nargs="+", help="image files and/or folders")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--out", help="write the predictions as CSV here")
    pr.add_argument("--all", action="store_true", help="print every row, not the first 50")
    pr.add_argument("--names", help="with a clusters.skops: the filled clusters.csv (cluster,name)")
    pr.add_argument("--runtime", default="auto", choices=("auto", *RUNTIMES),
                    help="what runs an exported artefact (auto: the fastest installed for its format)")
    _add_model_facts(pr)
    _add_trust(pr)
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", parents=[common], help="export a saved model to ONNX / LiteRT / OpenVINO / SavedModel, verified")
    ex.add_argument("model", help="a .keras / .h5 file (inside its run folder, its validation split checks the export)")
    ex.add_argument("--format", required=True, choices=tuple(FORMATS),
                    help="keras: only with --tta/--ensemble (one baked Keras model)")
    ex.add_argument("--out", help="artefact path (default: beside the model, e.g. model.onnx)")
    ex.add_argument("--calibration", help="real images for the check (and int8): val | test (the run's split) "
                                          "or a folder (class subfolders give labels)")
    ex.add_argument("--check", help="judge the artefact on these instead (val | test | a folder of class "
                                    "subfolders); with --int8 use a split the quantizer did not see, e.g. test")
    ex.add_argument("--int8", action="store_true", help="post-training int8 quantization (litert or openvino), "
                    "kept only if its accuracy is within 1 point of Keras on --check")
    ex.add_argument("--int8-method", default="auto", choices=("auto", *sorted({m for ms in INT8_METHODS.values() for m in ms})),
                    help="auto: try the format's methods fastest first (litert: full, dynamic; openvino: nncf) and "
                         "keep the first that passes; the others are kept as *.METHOD.rejected")
    ex.add_argument("--tta", action="append", choices=TTA_VIEWS, help="bake test-time views into the model")
    ex.add_argument("--ensemble", nargs="+", metavar="OTHER_MODEL", help="average these saved models in")
    ex.add_argument("--max-images", type=int, default=256, help="images used for the check")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing artefact")
    _add_model_facts(ex)
    _add_trust(ex)
    ex.set_defaults(func=cmd_export)

    inf = sub.add_parser("info", parents=[common], help="print the model card of a saved or exported model")
    inf.add_argument("model")
    inf.add_argument("--json", action="store_true", help="the full card as JSON")
    _add_trust(inf)
    inf.set_defaults(func=cmd_info)

    ev = sub.add_parser("evaluate", parents=[common], help="accuracy of a saved model on a folder of class subfolders")
    ev.add_argument("model")
    ev.add_argument("data")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--json", help="write all metrics as JSON here")
    _add_model_facts(ev)
    _add_trust(ev)
    ev.set_defaults(func=cmd_evaluate)

    cp = sub.add_parser("compare", parents=[common], help="train several models on one split; leaderboard + report")
    cp.add_argument("recipe", help="a comparison recipe (YAML with a models: list)")
    cp.add_argument("--set", action="append", metavar="KEY=VALUE")
    cp.add_argument("--output-dir")
    cp.add_argument("--overwrite", action="store_true")
    cp.add_argument("--tta", action="store_true", default=None, help="add each model with flip TTA to the candidates")
    cp.add_argument("--ensemble", type=int, default=None, help="add the mean of the top-k models (any kind) to the candidates")
    _add_decisions(cp, "the split")
    verbosity(cp)
    cp.set_defaults(func=cmd_compare)

    an = sub.add_parser("analyze", parents=[common], help="curves, confusion, galleries, Grad-CAM, embeddings, calibration, report")
    an.add_argument("target", help="a run folder (runs/<name>) or a model file")
    an.add_argument("data", nargs="?", help="with a model file: a folder of class subfolders")
    an.add_argument("--split", default="test", choices=("test", "val"), help="which split of a run")
    an.add_argument("--out", help="output folder (default: <run>/analysis)")
    an.add_argument("--explain", default="gradcam,gradcam++,smoothgrad",
                    help="comma-separated attribution methods, or none")
    an.add_argument("--gallery", type=int, default=10, help="images per gallery")
    _add_model_facts(an)
    _add_trust(an)
    an.set_defaults(func=cmd_analyze)

    fe = sub.add_parser("features", parents=[common], help="extract (and cache) pooled features of a model on a dataset")
    fe.add_argument("model", help="zoo name (resnet50_features), .keras file of a trained model")
    fe.add_argument("data", help="a folder, or 'digits'")
    fe.add_argument("--layer", default="auto", help="feature layer (default: the zoo model's, else \"features\", else "
                                                    "the input of a last Dense layer, else the output); output: the "
                                                    "model's output is the feature vector")
    fe.add_argument("--weights", default="default", help="imagenet | none | a weights file")
    fe.add_argument("--batch-size", type=int, default=64)
    fe.add_argument("--cache-dir", default=None, help="feature cache folder (default ~/.cache/kerasclf/features)")
    _add_model_facts(fe)
    _add_trust(fe)
    _add_builder_options(fe)
    fe.set_defaults(func=cmd_features)

    hd = sub.add_parser("head", parents=[common], help="feature extraction + a scikit-learn head (logistic "
                                     "regression by default): fit on train + val, score on test, save head.skops")
    hd.add_argument("data", help="a folder of class subfolders, or 'digits'")
    hd.add_argument("--features", default=DEFAULT_FEATURES, help="zoo or keras.applications name, or a model file "
                                                                  "(default: efficientnet_lite0, ImageNet)")
    hd.add_argument("--weights", default="default", help="imagenet | none | a weights file (names only; default: "
                                                        "the builder's, ImageNet for keras.applications)")
    hd.add_argument("--layer", default="auto", help="feature layer (as for `kerasclf features`)")
    hd.add_argument("--kind", default="logreg", choices=HEAD_KINDS)
    hd.add_argument("--C", default="auto", help="auto (lowest validation log-loss of 0.001..1), or one value / "
                                               "comma-separated values to choose from")
    hd.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="features averaged with the mirror image's (default: what measured best for the extractor: "
                         "off for efficientnet_lite0, on for MobileNet and models from files)")
    hd.add_argument("--taps", action=argparse.BooleanOptionalAction, default=None,
                    help="add pooled intermediate layers (MobileNet's four, EfficientNet-Lite's stage ends; "
                         "default: on for MobileNet, off for efficientnet_lite0)")
    hd.add_argument("--split", default="0.7,0.1,0.2", help="train,val,test fractions (seeded, stratified)")
    hd.add_argument("--seed", type=int, default=42)
    hd.add_argument("--out", default="runs/head")
    hd.add_argument("--overwrite", action="store_true")
    _add_model_facts(hd)
    _add_trust(hd)
    _add_builder_options(hd)
    hd.set_defaults(func=cmd_head)

    cl = sub.add_parser("cluster", parents=[common], help="PCA + KMeans on features; montages and a names template")
    cl.add_argument("data", help="a folder (class subfolders optional), or 'digits'")
    cl.add_argument("--features", default=DEFAULT_FEATURES, help="zoo name or model file (default: efficientnet_lite0, "
                                                                  "ImageNet)")
    cl.add_argument("--weights", default="default", help="imagenet | none | a weights file")
    cl.add_argument("--layer", default="auto", help="feature layer (default: the zoo model's, else \"features\", else "
                                                    "the input of a last Dense layer, else the output); output: the "
                                                    "model's output is the feature vector")
    cl.add_argument("--pca", default="50", help="components (int), variance kept (0.95) or none")
    cl.add_argument("--k", type=int, default=8)
    cl.add_argument("--elbow", help="comma-separated K values for the elbow/silhouette plot")
    cl.add_argument("--out", default="runs/clusters")
    cl.add_argument("--overwrite", action="store_true")
    _add_model_facts(cl)
    _add_trust(cl)
    _add_builder_options(cl)
    cl.set_defaults(func=cmd_cluster)

    ad = sub.add_parser("adopt", parents=[common], help="save a model kerasclf did not train once with its class names, task, "
                                      "input size and preprocessing inside (+ model card)")
    ad.add_argument("model", help="a .keras / .h5 file saved by Keras (e.g. from a notebook)")
    ad.add_argument("--out", required=True, help="the adopted model (.keras or .h5)")
    ad.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_model_facts(ad)
    _add_trust(ad)
    ad.set_defaults(func=cmd_adopt)

    au = sub.add_parser("audit", parents=[common], help="find likely mislabelled images: out-of-fold probabilities + cleanlab; "
                                      "label_issues.csv, an HTML gallery, estimated label errors per class")
    au.add_argument("data", nargs="?", help="a folder of class subfolders (not with --run)")
    au.add_argument("--run", help="a run folder: audit its data with its model's features; writes <run>/audit "
                                  "(kerasclf analyze then shows it)")
    au.add_argument("--features", help="feature extractor: zoo or keras.applications name, or a .keras model "
                                       "(default: efficientnet_lite0, ImageNet)")
    au.add_argument("--weights", default="default", help="imagenet | none | a weights file (a model by name)")
    au.add_argument("--layer", default="auto", help="feature layer (default: the model's features, else the "
                                                    "output); output: the model's output is the feature vector")
    au.add_argument("--folds", type=int, default=5, help="k of the k-fold logistic regression")
    au.add_argument("--filter-by", default="prune_by_noise_rate", choices=AUDIT_FILTERS,
                    help="cleanlab's find_label_issues filter")
    au.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="features averaged with the mirror image's (default: what measured best for the extractor)")
    au.add_argument("--out", help="output folder (default: <data name>_audit, or <run>/audit)")
    au.add_argument("--overwrite", action="store_true", help="replace the files of an earlier audit in --out")
    au.add_argument("--gallery", type=int, default=40, help="images in the HTML gallery")
    au.add_argument("--show", type=int, default=20, help="issues printed")
    au.add_argument("--batch-size", type=int, default=64)
    au.add_argument("--cache-dir", default=None, help="feature cache folder (default ~/.cache/kerasclf/features)")
    _add_decisions(au, "the audit (with --run: instead of the recipe's data.decisions)")
    _add_model_facts(au)
    _add_trust(au)
    _add_builder_options(au)
    au.set_defaults(func=cmd_audit)

    ca = sub.add_parser("convert-artifact", parents=[common], help="re-save an old head/clusters .joblib you made yourself as .skops")
    ca.add_argument("path", help="the old .joblib file")
    ca.add_argument("--trust", action="store_true",
                    help="required: loading a joblib file runs any code it holds; give it only for your own file")
    ca.set_defaults(func=cmd_convert_artifact)

    rv = sub.add_parser("review", parents=[common], help="look at what kerasclf found (label issues, conflicts, "
                        "duplicates, OOD, top losses) in a browser; decisions go to decisions.csv, files stay as they are")
    rv.add_argument("sources", nargs="+", help="run folders, audit folders (`kerasclf audit`) and check reports "
                                               "(`kerasclf check DATA --json FILE`) of one data set")
    rv.add_argument("--out", help="the review folder (default: RUN/review, else <first source>_review); "
                                  "decisions.csv goes here")
    rv.add_argument("--overwrite", action="store_true",
                    help="review other sources in a folder that holds a review (its decisions.csv is kept)")
    rv.add_argument("--top-losses", type=int, default=50, help="a run's misclassified images with the highest loss shown")
    rv.add_argument("--splits", default="train,val,test", help="the run splits its model scores (OOD, top losses)")
    rv.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    rv.add_argument("--no-browser", action="store_true", help="print the address instead of opening a browser")
    rv.add_argument("--no-serve", action="store_true", help="only write review.html (decisions are downloaded from it)")
    rv.set_defaults(func=cmd_review)

    sc = sub.add_parser("scan", parents=[common], help="what model files hold beyond tensor math (ops, layers, files "
                                     "they read); exit 0 clean, 1 refused: the check every command runs")
    sc.add_argument("files", nargs="+", help="SavedModel folders, .keras / .h5, .onnx, .tflite, OpenVINO .xml")
    sc.set_defaults(func=cmd_scan)

    ck = sub.add_parser("check", parents=[common], help="health check of an image folder (bad files, duplicates, balance)")
    ck.add_argument("data")
    ck.add_argument("--json", help="write the report as JSON here")
    ck.add_argument("--strict", action="store_true", help="exit 1 when bad files are found")
    _add_decisions(ck, "the check (excluded files are not checked; conflicts use the new labels)")
    ck.set_defaults(func=cmd_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kerasclf`` console script."""
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    try:
        with trusted(getattr(args, "trust", False)):  # --trust: refused model files run, each with a warning
            return int(args.func(args) or 0)
    except KerasclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; `kerasclf train RECIPE --resume` continues a training run", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

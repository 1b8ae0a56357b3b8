"""CelebA attributes as multi-label classification (seed 002): 32 of 40 attributes, -1 -> 0,
a ResNet of ResidualUnits, binary accuracy at a threshold chosen on validation.

    python examples/celeba_attributes.py ../shared/assets/celeba --epochs 3
"""
import argparse
from pathlib import Path

from kerasclf.evaluate import analyze_run
from kerasclf.train import load_recipe, train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("celeba", help="folder with list_attr_celeba.txt and img_align_celeba/")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--attributes", default="seed32", help="seed32, a number, or a comma list")
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

root = Path(args.celeba)
attrs = args.attributes if args.attributes in ("seed32",) or args.attributes.isdigit() else f"[{args.attributes}]"
result = train(load_recipe("celeba_resnet", [
    f"data.attr_file={root / 'list_attr_celeba.txt'}", f"data.image_dir={root / 'img_align_celeba'}",
    f"data.attributes={attrs}", f"train.epochs={args.epochs}",
    "model.stages=[32, 64, 128]", "model.units_per_stage=[1, 1, 1]"]), overwrite=args.overwrite)
test = result.metrics["test"]
print(f"mean per-attribute accuracy: {test['accuracy']:.3f}")
report = analyze_run(result.run_dir, explain_methods=("gradcam",))
print(f"per-attribute metrics, thresholds and galleries: {report['report']}")

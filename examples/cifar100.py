"""CIFAR-100 with the seed's three nets (simple CNN, deep CNN, EfficientNetB0 transfer).

    python examples/cifar100.py simple            # keras.datasets.cifar100 (downloads once), full epochs
    python examples/cifar100.py simple --quick    # one epoch on the offline 486-image subset
    python examples/cifar100.py deep --subset ../shared/assets/cifar/cifar100_subset.npz --epochs 2

The seed reports test accuracies of 0.483 (simple), 0.629 (deep) and 0.797 (EfficientNetB0).
"""
import argparse
from pathlib import Path

from kerasclf.train import load_recipe, train

RECIPES = {"simple": "cifar100_simple_cnn", "deep": "cifar100_deep_cnn",  # built-in recipe names
           "effnet": "cifar100_efficientnet_b0"}
SUBSET = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "cifar" / "cifar100_subset.npz"

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("net", choices=sorted(RECIPES))
parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
parser.add_argument("--subset", help="an .npz of CIFAR-100 arrays instead of the full download")
parser.add_argument("--quick", action="store_true", help=f"one epoch on --subset (default {SUBSET.name})")
parser.add_argument("--out", default="runs", help="where the run folder goes")
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

overrides = [f"name=cifar100_{args.net}", f"output_dir={args.out}"]
subset = args.subset or (str(SUBSET) if args.quick else None)
if args.quick:
    overrides += ["train.epochs=1", "train.early_stopping=null"]
elif args.epochs:
    overrides.append(f"train.epochs={args.epochs}")
if subset:
    overrides += ["data.source=npz", f"data.path={subset}", "data.name=null"]
if args.net == "effnet" and args.quick:
    overrides += ["model.weights=null", "train.fine_tune=null"]  # no download in a smoke run
result = train(load_recipe(RECIPES[args.net], overrides), overwrite=args.overwrite)
print(f"test accuracy: {result.metrics['test']['accuracy']:.4f}  (run folder: {result.run_dir})")

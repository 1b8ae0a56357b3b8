"""CIFAR-100 with the seed's three nets (simple CNN, deep CNN, EfficientNetB0 transfer).

    python examples/cifar100.py simple            # keras.datasets.cifar100 (downloads once)
    python examples/cifar100.py simple --subset ../shared/assets/cifar/cifar100_subset.npz --epochs 2

The seed reports test accuracies of 0.483 (simple), 0.629 (deep) and 0.797 (EfficientNetB0).
"""
import argparse

from kerasclf.train import load_recipe, train

RECIPES = {"simple": "cifar100_simple_cnn", "deep": "cifar100_deep_cnn",  # built-in recipe names
           "effnet": "cifar100_efficientnet_b0"}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("net", choices=sorted(RECIPES))
parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
parser.add_argument("--subset", help="an .npz of CIFAR-100 arrays instead of the full download")
parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
args = parser.parse_args()

overrides = [f"name=cifar100_{args.net}"]
if args.epochs:
    overrides.append(f"train.epochs={args.epochs}")
if args.subset:
    overrides += ["data.source=npz", f"data.path={args.subset}", "data.name=null"]
result = train(load_recipe(RECIPES[args.net], overrides), overwrite=args.overwrite)
print(f"test accuracy: {result.metrics['test']['accuracy']:.3f}  (run folder: {result.run_dir})")

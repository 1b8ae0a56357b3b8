"""kerasclf: a Keras 3 toolkit and model zoo for image classification.

Example:
    >>> import kerasclf
    >>> kerasclf.__version__
    '0.1.0'
"""
__version__ = "0.1.0"
__all__ = ["__version__"]

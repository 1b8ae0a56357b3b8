"""kerasclf: a Keras 3 toolkit and model zoo for image classification.

Importing the package registers every custom Keras object it defines (``Preprocess``,
``ResidualUnit``, ``RandomAffine``), so a model saved with plain ``model.save("m.keras")``
reloads with plain ``keras.saving.load_model("m.keras")`` once ``kerasclf`` is imported, the
way importing ``keras_hub`` works. TensorFlow's C++ start-up lines are hidden on import
(``KERASCLF_VERBOSE=1`` or ``kerasclf --verbose ...`` shows them; see ``kerasclf._startup``).

Example:
    >>> import kerasclf
    >>> kerasclf.__version__
    '0.1.0'
    >>> "kerasclf>Preprocess" in kerasclf.custom_objects()
    True
"""
__version__ = "0.1.0"

from kerasclf._startup import import_tensorflow

import_tensorflow()  # before anything below imports TensorFlow

import keras  # noqa: E402

import kerasclf.data.augment  # noqa: E402,F401  (registers RandomAffine)
import kerasclf.train.optim  # noqa: E402,F401  (registers OneCycle, saved with a compiled model's optimizer)
import kerasclf.zoo  # noqa: E402,F401  (registers Preprocess, ResidualUnit and the builders)

__all__ = ["__version__", "custom_objects"]


def custom_objects() -> dict[str, type]:
    """The custom Keras objects kerasclf registers, by their registered name (``kerasclf>Name``)."""
    return {name: obj for name, obj in keras.saving.get_custom_objects().items()
            if name.startswith("kerasclf>")}

"""Models behind a registry: ``create_model(name, num_classes=..., **args)``.

Importing this package registers the built-in models; it imports torch, so the
CLI imports it lazily inside commands.
"""

from serenesense_cli.models.registry import (
    AudioClassifier,
    create_model,
    get_model_spec,
    list_models,
    models_where,
    recommended_model,
    register_model,
)

# Register the built-in architectures.
from serenesense_cli.models import audiomae as _audiomae  # noqa: F401  isort: skip
from serenesense_cli.models import cnn as _cnn  # noqa: F401  isort: skip
from serenesense_cli.models import crnn as _crnn  # noqa: F401  isort: skip
from serenesense_cli.models import melcnn as _melcnn  # noqa: F401  isort: skip

__all__ = [
    "AudioClassifier",
    "create_model",
    "get_model_spec",
    "list_models",
    "models_where",
    "recommended_model",
    "register_model",
]

"""ceasr: speech recognition trained with cross-entropy objectives by gradient descent."""

from ceasr.errors import AudioError, CeasrError, ConfigError, ManifestError

__version__ = "0.1.0"

__all__ = ["AudioError", "CeasrError", "ConfigError", "ManifestError", "__version__"]

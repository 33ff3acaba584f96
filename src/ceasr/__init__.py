"""ceasr: speech recognition trained with cross-entropy objectives by gradient descent.

    import ceasr
    asr = ceasr.load_model("runs/demo/model")
    print(asr.transcribe("hello.wav").text)
"""

from ceasr.errors import AudioError, CeasrError, ConfigError, ManifestError

__version__ = "0.1.0"

__all__ = ["AudioError", "CeasrError", "ConfigError", "ManifestError", "load_model", "__version__"]


def __getattr__(name):
    # load_model pulls in torch; importing ceasr alone (e.g. for its errors) stays light.
    if name == "load_model":
        from ceasr.api import load_model

        return load_model
    raise AttributeError(f"module 'ceasr' has no attribute {name!r}")

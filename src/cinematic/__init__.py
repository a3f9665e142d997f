"""cinematic: train and run the models behind cinematic music and song generation.

Python API (DESIGN §8)::

    from cinematic import load
    music = load("work_dir/music/checkpoints/best.pth")
    score = music.generate(emotion="epic", length=1024, seed=0)
"""

from cinematic.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__", "load"]


def load(checkpoint, **kwargs):
    """Load a checkpoint of any task and return its generator object (see `cinematic.api.load`)."""
    from cinematic.api import load as _load

    return _load(checkpoint, **kwargs)

"""Seed entry point: `python train_music.py --config config.yaml --data_dir ./data/music`.

The same as `cinematic train music ...`; also works under torchrun and the deprecated
`python -m torch.distributed.launch` (its --local-rank argument is accepted and ignored).
"""

import sys

from cinematic.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "music", *sys.argv[1:]]))

import sys

from cinematic.cli import main

sys.exit(main())

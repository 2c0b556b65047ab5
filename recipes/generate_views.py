"""Generate adaptive views: ``accelerate launch recipes/generate_views.py --config recipes/configs/X.yaml``."""

import sys

from genview_hf.generation.run import main

if __name__ == "__main__":
    sys.exit(main())

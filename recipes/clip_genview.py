"""GenView(++) image-text training (CLIP, SLIP) through GenViewTrainer.

accelerate launch recipes/clip_genview.py --config recipes/configs/slip_vitb16_cc3m.yaml
accelerate launch recipes/clip_genview.py --config recipes/configs/tiny_clip_shapes.yaml --max_steps 5
"""

import sys

from genview_hf.training.run import main

if __name__ == "__main__":
    sys.exit(main())

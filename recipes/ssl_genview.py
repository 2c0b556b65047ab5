"""GenView image SSL (MoCo v2/v3, SimSiam, BYOL, SimCLR, LeOCLR) through GenViewTrainer.

accelerate launch recipes/ssl_genview.py --config recipes/configs/mocov3_vitb16_imagenet.yaml
accelerate launch recipes/ssl_genview.py --config recipes/configs/tiny_mocov3_shapes.yaml --max_steps 5
"""

import sys

from genview_hf.training.run import main

if __name__ == "__main__":
    sys.exit(main())

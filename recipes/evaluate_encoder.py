"""Evaluate an encoder checkpoint: kNN, linear probe, zero-shot classification, retrieval.

    python recipes/evaluate_encoder.py --checkpoint outputs/mocov3-genview --dataset sample:digits
    python recipes/evaluate_encoder.py --checkpoint user/clip-genview --dataset sample:digits \
        --protocols knn zero_shot retrieval --update_card

Same options as ``genview evaluate`` (``--help``); ``--config FILE.yaml`` supplies them.
"""

import sys

from genview_hf.evaluation.run import main

if __name__ == "__main__":
    sys.exit(main())

"""Generate GenView / GenView++ positive views and foreground masks for a dataset.

    accelerate launch recipes/generate_views.py --config recipes/configs/genview_ic_imagenet.yaml
    accelerate launch --multi_gpu --num_processes 8 recipes/generate_views.py \
        --config recipes/configs/genviewpp_cc3m.yaml --push_to_hub --hub_dataset_id user/cc3m-genviewpp

Also ``genview generate --config ...``. The settings are ``ScriptArguments`` (which dataset and
split) and ``ViewGenerationConfig`` (models, policies, execution, publishing); ``--config``
supplies them from YAML and flags override. Run it again with the same settings to resume.
"""

import logging
import sys
from pathlib import Path

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.loading import load_split
from genview_hf.distributed import end_distributed
from genview_hf.generation import ViewGenerationConfig, generate_views

logger = logging.getLogger(__name__)


def main(script_args: ScriptArguments, config: ViewGenerationConfig) -> Path:
    """Load the split, generate its views (pushing them when ``config.push_to_hub``); returns the folder."""
    dataset = load_split(
        script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_config
    )
    folder = generate_views(dataset, config, dataset_name=script_args.dataset_name)
    logger.info("views dataset ready in %s (load it with datasets.load_dataset(%r))", folder, str(folder))
    return folder


def cli(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run :func:`main`; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    script_args, config = parse_config((ScriptArguments, ViewGenerationConfig), argv)
    main(script_args, config)
    end_distributed()  # under a launcher: the process groups go now, not in the interpreter's exit
    return 0


if __name__ == "__main__":
    sys.exit(cli())

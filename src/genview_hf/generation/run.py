"""Command line of view generation: ``accelerate launch recipes/generate_views.py --config X.yaml``.

Also ``genview generate --config X.yaml``. Every setting of ``ViewGenerationConfig`` is a flag;
``--config`` supplies them from YAML and flags override.
"""

from __future__ import annotations

import logging

from ..config import parse_config
from .config import ViewGenerationConfig


def main(argv: list[str] | None = None, *, api=None) -> int:
    """Parse the settings, load the input split and generate; returns the exit status."""
    from .driver import generate_views, load_input

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = parse_config((ViewGenerationConfig,), argv)
    folder = generate_views(load_input(config), config, api=api)
    logging.getLogger(__name__).info("views dataset ready in %s", folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

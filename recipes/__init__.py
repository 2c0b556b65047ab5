"""Recipes: the scripts behind ``accelerate launch recipes/<name>.py`` and ``genview <command>``; ``configs/`` holds the paper settings."""

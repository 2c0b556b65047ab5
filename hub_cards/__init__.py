"""Model and dataset card templates (Jinja, rendered by huggingface_hubs ModelCard / DatasetCard)."""

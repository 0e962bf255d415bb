"""Command entry points (Hydra mains): train, list."""

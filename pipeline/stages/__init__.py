"""One module per DVC stage, each with a thin `main(cfg)` that pipeline/cli.py calls."""

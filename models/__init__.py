"""Model definitions and training, one folder per family. Serving never imports this package."""

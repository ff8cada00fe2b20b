"""The spec's integrations, one module each; ``coda.voice`` exports them."""

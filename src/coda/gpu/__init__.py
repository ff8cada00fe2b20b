"""GPU memory: a budget that components reserve from before they load."""

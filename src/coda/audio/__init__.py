"""Audio front end: decode and validate, resample, encode."""

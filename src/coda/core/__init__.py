"""Core types shared by every layer: errors, data models, configuration."""

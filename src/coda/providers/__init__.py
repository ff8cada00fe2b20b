"""Model providers: one protocol per role, one file per provider, one registry."""

"""Conversation sync: mirror voice conversations into a text conversation manager."""

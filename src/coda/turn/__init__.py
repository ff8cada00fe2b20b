"""The turn pipeline every entry point uses; the stages in order are in ``pipeline``."""

"""The report stage's parts: formatting, the verdict (which architecture for which lengths)."""

"""Sharing a trained model: the model card, the zip another site installs, and installing it."""

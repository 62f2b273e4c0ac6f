"""Sensors for pipelines built around training steps."""

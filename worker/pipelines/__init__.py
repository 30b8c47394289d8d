"""Diffusers pipelines and model builders that ship with the farm."""

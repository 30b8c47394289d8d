"""Diffusers pipelines that ship with the farm (the tools that build their weights are in model_tools/)."""

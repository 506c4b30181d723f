"""Training: recipes, the resumable train loop, checkpoints, Core-Cocktail merging."""

from drvoice_lab.training.recipe import LoraSettings, Recipe, Stage, load_recipe

__all__ = ["LoraSettings", "Recipe", "Stage", "load_recipe"]

"""The built-in model's lifecycle: procedural dataset, training, weights, quality check, model card.

Nothing here is needed to sample: :func:`unetdyn.load_unet` reads the shipped weights through
:mod:`unetdyn.builtin_model.weights`.
"""

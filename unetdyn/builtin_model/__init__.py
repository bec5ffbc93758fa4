"""The built-in model's lifecycle: procedural dataset, training, quality check, model card, family.

Nothing here is needed to sample: :func:`unetdyn.load_unet` reads the weights through
:mod:`unetdyn.backends.builtin_weights`, which this package also writes through.
"""

"""Unet backends behind one protocol (:class:`unetdyn.unet.Unet`), and the registry that builds them by name."""

from unetdyn.backends.registry import MODELS, check_model, load_unet, resolve_device

__all__ = ["MODELS", "check_model", "load_unet", "resolve_device"]

"""Neural style transfer (Gatys et al.) on VGG-19 or SqueezeNet features."""

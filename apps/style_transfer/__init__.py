"""Neural style transfer (Gatys et al.) on VGG-19 or SqueezeNet features.

From Python, ``transfer.stylize(content, styles, output, settings)`` does what the ``stylize``
command does and returns the same plain result; ``optimize.stylize_image`` works on arrays.
"""

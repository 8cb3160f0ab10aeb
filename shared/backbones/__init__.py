"""Building blocks and the networks built from them."""

"""A small CNN digit classifier (scikit-learn's 8x8 digits): the core's image-model proof."""

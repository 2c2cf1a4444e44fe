"""The two Greengrass function entry points: thin shells over ``agent``."""

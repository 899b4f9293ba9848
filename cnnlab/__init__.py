"""CNN Lab: train, evaluate, explain and export convolutional image classifiers.

Importing the package is cheap on purpose: TensorFlow is imported lazily by the modules that
need it, so the app's home page and the CLI's help start fast.
"""

__version__ = "0.1.0"

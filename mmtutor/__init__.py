"""mmtutor: the helper package of the book *Multimodal large models and their compression*.

Notebooks import from here instead of re-pasting code. One concept per module:

- :mod:`mmtutor.runtime`     seeds, thread counts and the offline guard every notebook starts with
- :mod:`mmtutor.functional`  ReLU, softmax, cross-entropy and their gradients (NumPy)
- :mod:`mmtutor.metrics`     accuracy, precision, recall, F1, confusion matrix
- :mod:`mmtutor.sizes`       parameter counts and memory of real architectures, from their configs
"""

__version__ = "0.1.0"

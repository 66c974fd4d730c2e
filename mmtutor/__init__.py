"""mmtutor: the helper package of the book *Multimodal large models and their compression*.

Notebooks import from here instead of re-pasting code. One concept per module; layers point one way
(``functional``/``metrics`` -> ``preprocess``/``data`` -> ``models`` -> ``train`` -> ``compress``/``evaluate``):

- :mod:`mmtutor.runtime`      seeds, thread counts and the offline guard every notebook starts with
- :mod:`mmtutor.functional`   ReLU, softmax, cross-entropy and their gradients (NumPy)
- :mod:`mmtutor.metrics`      accuracy, precision, recall, F1, confusion matrix, bootstrap intervals
- :mod:`mmtutor.sizes`        parameter counts and memory of real architectures, from their configs
- :mod:`mmtutor.data`         AV-digits, shapes and the bilingual dialogue corpus
- :mod:`mmtutor.preprocess`   text, image and audio preprocessing from scratch
- :mod:`mmtutor.models`       fusion styles, AV-digits encoders, a CLIP-style model, Keras twins
- :mod:`mmtutor.train`        a small PyTorch training loop with early stopping and checkpoints
- :mod:`mmtutor.regularise`   what L1/L2/dropout leave in the weights; sparse storage
- :mod:`mmtutor.robustness`   accuracy as a modality degrades or goes missing
- :mod:`mmtutor.retrieval`    Recall@K for image-text retrieval
- :mod:`mmtutor.compress`     pruning and quantization building blocks
- :mod:`mmtutor.evaluate`     size of the shipped artefact, latency side by side, fidelity
"""

__version__ = "0.1.0"

"""Preprocessing: turn raw modalities into the arrays a model consumes, written from scratch in NumPy.

Each submodule is checked against the library a practitioner would use (PyTorch, TensorFlow,
scikit-learn, librosa) in ``tests/test_preprocess_<name>.py``. Import the submodule you need;
nothing is imported eagerly here, so ``import mmtutor.preprocess`` stays cheap.

- :mod:`mmtutor.preprocess.image`  uint8 → float, per-channel normalisation, min–max scaling,
  2-D convolution (cross-correlation, NHWC), max pooling, a bank of classic 3×3 filters
- :mod:`mmtutor.preprocess.audio`  framing, windows, STFT, mel scale and mel filter bank,
  (log-)mel spectrogram, decibels, orthonormal DCT-II, MFCC
- :mod:`mmtutor.preprocess.text`   character, word and byte-level BPE tokenisers, vocabulary
  encoding with padding and attention masks, embedding lookup, mean pooling
"""

"""Model compression from first principles: small modules, each with the maths it implements.

- :mod:`mmtutor.compress.prune`     magnitude pruning (unstructured, exact amount, global or per layer) and
  structured pruning that removes whole neurons, channels (also where a layer reads a concatenation) and
  attention heads, giving a genuinely smaller model; a sparsity report
- :mod:`mmtutor.compress.quantize`  affine (uniform) quantization of tensors, per tensor, per channel and
  per group, 2 to 8 bits; int4/int8 weight-only, dynamic and static quantization of whole models, with two
  4-bit codes packed per byte
- :mod:`mmtutor.compress.qat`       quantization-aware training: fake quantization with a straight-through
  estimator, then conversion to the integer model
- :mod:`mmtutor.compress.outliers`  activation outliers of transformers and their fixes: per-row scales,
  SmoothQuant scaling, int8 embeddings (the all-MiniLM-L6-v2 recipe)
- :mod:`mmtutor.compress.distill`   knowledge distillation: Hinton et al.'s loss and its training loop
- :mod:`mmtutor.compress.lowrank`   truncated-SVD factorisation of linear layers, rank chosen by energy
- :mod:`mmtutor.compress.cluster`   k-means weight sharing with a codebook, and fine-tuning of the centroids
- :mod:`mmtutor.compress.entropy`   Huffman coding and sparse-position encodings: the real compressed size
- :mod:`mmtutor.compress.pipeline`  Deep Compression: prune, share, entropy-code, and decode back to a model
- :mod:`mmtutor.compress.gpt2`      GPT-2 (transformers): ``Conv1D`` layers as ``nn.Linear``, weight-only
  quantization that keeps the embedding and the output head tied
- :mod:`mmtutor.compress.captioner` weight-only quantization of the chapter 13 prefix captioner
- :mod:`mmtutor.compress.tflite`    the TensorFlow path: the fusion model in Keras, TFLite conversion and the
  LiteRT interpreter

Sizes, latencies and fidelity of the compressed models are measured with :mod:`mmtutor.evaluate`;
``python -m mmtutor.bench compression`` re-measures every headline result (:mod:`mmtutor.bench`).
"""

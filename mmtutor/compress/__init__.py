"""Model compression from first principles: small modules, each with the maths it implements.

- :mod:`mmtutor.compress.prune`     magnitude pruning (unstructured, exact amount) and structured pruning
  that removes whole neurons and channels, giving a genuinely smaller model; a sparsity report
- :mod:`mmtutor.compress.quantize`  affine (uniform) quantization of tensors, per tensor, per channel and
  per group, 2 to 8 bits; fake quantization for quantization-aware training; int4/int8 weight-only
  linear layers with two 4-bit codes packed per byte

Sizes, latencies and fidelity of the compressed models are measured with :mod:`mmtutor.evaluate`.
"""

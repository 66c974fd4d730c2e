"""Models of the book (PyTorch; the Keras twins live in :mod:`mmtutor.models.keras`).

- :mod:`mmtutor.models.fusion`: the ways to combine the embeddings of several modalities (early, late,
  intermediate, tensor, low-rank tensor and cross-attention fusion), re-exported here.
- :mod:`mmtutor.models.avdigits`: the image and audio encoders for AV-digits and a classifier per fusion style.
- :mod:`mmtutor.models.clip`: a CLIP-style contrastive image-text model for the shapes scenes.
"""

from mmtutor.models import fusion
from mmtutor.models.fusion import (CrossAttentionFusion, EarlyFusion, EncodeThenFuse, IntermediateFusion,
                                   LateFusion, LowRankTensorFusion, TensorFusion, append_one)

__all__ = ["fusion", *fusion.__all__]

"""Models of the book (PyTorch).

:mod:`mmtutor.models.fusion`: the ways to combine the embeddings of several modalities (early, late,
intermediate, tensor, low-rank tensor and cross-attention fusion), re-exported here.
"""

from mmtutor.models import fusion
from mmtutor.models.fusion import (CrossAttentionFusion, EarlyFusion, EncodeThenFuse, IntermediateFusion,
                                   LateFusion, LowRankTensorFusion, TensorFusion, append_one)

__all__ = ["fusion", *fusion.__all__]

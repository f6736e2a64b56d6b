"""Weight initialisation shared by the backbones, the decoder and the MixedAE head."""
import torch.nn as nn


def init_transformer_(module):
    """MAE initialisation: xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

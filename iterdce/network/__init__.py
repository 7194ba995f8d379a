"""The iterU-Net model and the Med3D feature extractor (re-exports only)."""

from iterdce.network.convlstm import ConvLSTMCell3D, LSTMState
from iterdce.network.iterunet import CONFIG_KEYS, IterUNet, build_network, validate_network_config
from iterdce.network.med3d import Med3DFeatures, Med3DWeightsError, ResNet10, load_med3d_weights
from iterdce.network.time_embedding import TimeEmbedding, sinusoidal_encoding

__all__ = [
    "CONFIG_KEYS",
    "ConvLSTMCell3D",
    "IterUNet",
    "LSTMState",
    "Med3DFeatures",
    "Med3DWeightsError",
    "ResNet10",
    "TimeEmbedding",
    "build_network",
    "load_med3d_weights",
    "sinusoidal_encoding",
    "validate_network_config",
]
